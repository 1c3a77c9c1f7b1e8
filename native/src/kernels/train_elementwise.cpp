// Fused element-wise training kernels (train_elementwise.h). Each row is independent: the pool's threads take
// rows in turn; within a row the loops are plain f32 (the compiler vectorizes what the baseline ISA allows, exp
// aside). One pass over the operands replaces tfjs's chain of single-threaded kernels and their temporaries.
#include "train_elementwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

namespace {
inline float sigmoidf(float g) { return 1.f / (1.f + std::exp(-g)); }
inline double sigmoidd(double g) { return 1.0 / (1.0 + std::exp(-g)); }
// Rows per pool job: about 16K elements.
size_t row_grain(size_t width) { return std::max<size_t>(1, (size_t(1) << 14) / std::max<size_t>(1, width)); }
}  // namespace

void routed_swiglu_ref(const float* gate, const float* up, const float* w, int N, int E, int I, float* out) {
  const size_t width = size_t(E) * I;
  for (int n = 0; n < N; ++n)
    for (size_t j = 0; j < width; ++j) {
      const double g = gate[n * width + j];
      out[n * width + j] = float(g * sigmoidd(g) * up[n * width + j] * w[size_t(n) * E + j / I]);
    }
}

void routed_swiglu(ThreadPool* pool, const float* gate, const float* up, const float* w, int N, int E, int I, float* out) {
  const size_t width = size_t(E) * I;
  parallel_for(pool, size_t(N), row_grain(width), [&](size_t n0, size_t n1, int) {
    for (size_t n = n0; n < n1; ++n)
      for (int e = 0; e < E; ++e) {
        const size_t base = n * width + size_t(e) * I;
        const float we = w[n * E + e];
        for (int i = 0; i < I; ++i) {
          const float g = gate[base + i];
          out[base + i] = g * sigmoidf(g) * up[base + i] * we;
        }
      }
  });
}

void routed_swiglu_backward_ref(const float* gate, const float* up, const float* w, const float* dy, int N, int E, int I,
                         float* dgate, float* dup, float* dw) {
  const size_t width = size_t(E) * I;
  for (int n = 0; n < N; ++n)
    for (int e = 0; e < E; ++e) {
      double dwe = 0;
      const double we = w[size_t(n) * E + e];
      for (int i = 0; i < I; ++i) {
        const size_t j = n * width + size_t(e) * I + i;
        const double g = gate[j], u = up[j], d = dy[j], s = sigmoidd(g), silu = g * s;
        dgate[j] = float(d * we * u * s * (1 + g * (1 - s)));
        dup[j] = float(d * we * silu);
        dwe += d * silu * u;
      }
      dw[size_t(n) * E + e] = float(dwe);
    }
}

void routed_swiglu_backward(ThreadPool* pool, const float* gate, const float* up, const float* w, const float* dy, int N, int E,
                     int I, float* dgate, float* dup, float* dw) {
  const size_t width = size_t(E) * I;
  parallel_for(pool, size_t(N), row_grain(width), [&](size_t n0, size_t n1, int) {
    for (size_t n = n0; n < n1; ++n)
      for (int e = 0; e < E; ++e) {
        const size_t base = n * width + size_t(e) * I;
        const float we = w[n * E + e];
        float dwe = 0.f;
        for (int i = 0; i < I; ++i) {
          const float g = gate[base + i], u = up[base + i], d = dy[base + i], s = sigmoidf(g), silu = g * s;
          dgate[base + i] = d * we * u * (s * (1.f + g * (1.f - s)));
          dup[base + i] = d * we * silu;
          dwe += d * silu * u;
        }
        dw[n * E + e] = dwe;
      }
  });
}

void softmax_xent_ref(const float* logits, const int32_t* targets, int N, int V, float* loss) {
  for (int n = 0; n < N; ++n) {
    const float* row = logits + size_t(n) * V;
    double most = row[0], sum = 0;
    for (int v = 1; v < V; ++v) most = std::max(most, double(row[v]));
    for (int v = 0; v < V; ++v) sum += std::exp(double(row[v]) - most);
    loss[n] = float(most + std::log(sum) - row[targets[n]]);
  }
}

namespace {
// max and log Σ exp(x − max) of one row, the sum in double (V terms of at most 1).
void row_logsumexp(const float* row, int V, float& most, float& logSum) {
  float m = row[0];
  for (int v = 1; v < V; ++v) m = std::max(m, row[v]);
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += std::exp(row[v] - m);
  most = m;
  logSum = float(std::log(sum));
}
}  // namespace

void softmax_xent(ThreadPool* pool, const float* logits, const int32_t* targets, int N, int V, float* loss) {
  parallel_for(pool, size_t(N), row_grain(size_t(V)), [&](size_t n0, size_t n1, int) {
    for (size_t n = n0; n < n1; ++n) {
      const float* row = logits + n * V;
      float most, logSum;
      row_logsumexp(row, V, most, logSum);
      loss[n] = (most + logSum) - row[targets[n]];
    }
  });
}

void softmax_xent_backward_ref(const float* logits, const int32_t* targets, const float* dloss, int N, int V, float* dlogits) {
  for (int n = 0; n < N; ++n) {
    const float* row = logits + size_t(n) * V;
    double most = row[0], sum = 0;
    for (int v = 1; v < V; ++v) most = std::max(most, double(row[v]));
    for (int v = 0; v < V; ++v) sum += std::exp(double(row[v]) - most);
    for (int v = 0; v < V; ++v)
      dlogits[size_t(n) * V + v] = float(dloss[n] * (std::exp(double(row[v]) - most) / sum - (v == targets[n] ? 1 : 0)));
  }
}

void softmax_xent_backward(ThreadPool* pool, const float* logits, const int32_t* targets, const float* dloss, int N, int V,
                           float* dlogits) {
  parallel_for(pool, size_t(N), row_grain(size_t(V)), [&](size_t n0, size_t n1, int) {
    for (size_t n = n0; n < n1; ++n) {
      const float* row = logits + n * V;
      float* out = dlogits + n * V;
      float most, logSum;
      row_logsumexp(row, V, most, logSum);
      const float shift = most + logSum, d = dloss[n];
      for (int v = 0; v < V; ++v) out[v] = d * std::exp(row[v] - shift);
      out[targets[n]] -= d;
    }
  });
}

void rmsnorm_backward_ref(const float* x, const float* w, const float* dy, int T, int d, float eps, float* dx, float* dw) {
  std::vector<double> dwSum(d, 0.0);
  for (int t = 0; t < T; ++t) {
    const float* xr = x + size_t(t) * d;
    const float* g = dy + size_t(t) * d;
    double ss = 0, dot = 0;
    for (int j = 0; j < d; ++j) ss += double(xr[j]) * xr[j];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    for (int j = 0; j < d; ++j) dot += double(g[j]) * w[j] * xr[j];
    for (int j = 0; j < d; ++j) {
      dx[size_t(t) * d + j] = float(r * g[j] * w[j] - xr[j] * r * r * r * dot / d);
      dwSum[j] += double(g[j]) * xr[j] * r;
    }
  }
  for (int j = 0; j < d; ++j) dw[j] = float(dwSum[j]);
}

void rmsnorm_backward(ThreadPool* pool, const float* x, const float* w, const float* dy, int T, int d, float eps, float* dx,
                      float* dw) {
  constexpr int kBlockRows = 32;  // rows per partial dw
  const size_t blocks = (size_t(T) + kBlockRows - 1) / kBlockRows;
  std::vector<float> partial(blocks * size_t(d));
  parallel_for(pool, blocks, 1, [&](size_t b0, size_t b1, int) {
    for (size_t b = b0; b < b1; ++b) {
      float* pw = partial.data() + b * d;
      std::fill(pw, pw + d, 0.f);
      const size_t t1 = std::min(size_t(T), (b + 1) * kBlockRows);
      for (size_t t = b * kBlockRows; t < t1; ++t) {
        const float* xr = x + t * d;
        const float* g = dy + t * d;
        float* out = dx + t * d;
        float ss = 0.f, dot = 0.f;
        for (int j = 0; j < d; ++j) ss += xr[j] * xr[j];
        const float r = 1.f / std::sqrt(ss / float(d) + eps);
        for (int j = 0; j < d; ++j) dot += g[j] * w[j] * xr[j];
        const float c = r * r * r * dot / float(d);
        for (int j = 0; j < d; ++j) {
          out[j] = r * g[j] * w[j] - xr[j] * c;
          pw[j] += g[j] * xr[j] * r;
        }
      }
    }
  });
  for (int j = 0; j < d; ++j) {
    float acc = 0.f;
    for (size_t b = 0; b < blocks; ++b) acc += partial[b * d + j];
    dw[j] = acc;
  }
}

void causal_softmax_ref(const float* x, int R, int C, float scale, int period, float* y) {
  for (int r = 0; r < R; ++r) {
    const float* row = x + size_t(r) * C;
    float* out = y + size_t(r) * C;
    const int kept = period > 0 ? std::min(C, r % period + 1) : C;
    double most = double(scale) * row[0], sum = 0;
    for (int j = 1; j < kept; ++j) most = std::max(most, double(scale) * row[j]);
    for (int j = 0; j < kept; ++j) sum += std::exp(double(scale) * row[j] - most);
    for (int j = 0; j < C; ++j) out[j] = j < kept ? float(std::exp(double(scale) * row[j] - most) / sum) : 0.f;
  }
}

void causal_softmax(ThreadPool* pool, const float* x, int R, int C, float scale, int period, float* y) {
  parallel_for(pool, size_t(R), row_grain(size_t(C)), [&](size_t r0, size_t r1, int) {
    for (size_t r = r0; r < r1; ++r)
      softmax_row(x + r * C, y + r * C, period > 0 ? std::min(C, int(r % size_t(period)) + 1) : C, C, scale);
  });
}

void causal_softmax_backward_ref(const float* y, const float* dy, int R, int C, float scale, float* dx) {
  for (int r = 0; r < R; ++r) {
    const size_t base = size_t(r) * C;
    double dot = 0;
    for (int j = 0; j < C; ++j) dot += double(dy[base + j]) * y[base + j];
    for (int j = 0; j < C; ++j) dx[base + j] = float(double(scale) * y[base + j] * (dy[base + j] - dot));
  }
}

void causal_softmax_backward(ThreadPool* pool, const float* y, const float* dy, int R, int C, float scale, float* dx) {
  parallel_for(pool, size_t(R), row_grain(size_t(C)), [&](size_t r0, size_t r1, int) {
    for (size_t r = r0; r < r1; ++r) {
      const float* yr = y + r * C;
      const float* g = dy + r * C;
      float* out = dx + r * C;
      float dot = 0;
      for (int j = 0; j < C; ++j) dot += g[j] * yr[j];
      for (int j = 0; j < C; ++j) out[j] = scale * yr[j] * (g[j] - dot);
    }
  });
}

}  // namespace dsmoe
