// reference.cpp — the CPU reference implementations declared in reference.h.
#include "reference.h"

#include <math.h>
#include <string.h>

#include <algorithm>
#include <numeric>

#include "dsmoe_cuda.h"
#include "../src/common/rng.h"
#include "../src/kernels/sampling.h"

namespace ref {

uint16_t f2bf(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
float bf2f(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float silu(double g) { return (float)(g / (1.0 + exp(-g))); }

void rms_norm(const float* x, const float* w, float* y, int T, int d, float eps) {
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += (double)x[t * d + i] * x[t * d + i];
    const double inv = 1.0 / sqrt(ss / d + eps);
    for (int i = 0; i < d; ++i) y[t * d + i] = (float)(x[t * d + i] * inv * w[i]);
  }
}

void linear(const float* x, const uint16_t* W, const float* bias, float* y, int T, int in, int out, bool accumulate) {
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < out; ++n) {
      double s = bias ? bias[n] : 0.0;
      for (int i = 0; i < in; ++i) s += (double)x[(size_t)t * in + i] * bf2f(W[(size_t)n * in + i]);
      float* dst = &y[(size_t)t * out + n];
      *dst = accumulate ? (float)(*dst + s) : (float)s;
    }
}

void rope(float* x, int T, int n_heads, int hd, int row_stride, const int* positions, float theta) {
  const int half = hd / 2;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < n_heads; ++h) {
      float* p = x + (size_t)t * row_stride + (size_t)h * hd;
      for (int i = 0; i < half; ++i) {
        const double ang = positions[t] * pow((double)theta, -2.0 * i / hd);
        const double c = cos(ang), s = sin(ang);
        const double a = p[i], b = p[i + half];
        p[i] = (float)(a * c - b * s);
        p[i + half] = (float)(b * c + a * s);
      }
    }
}

void kv_append(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
               float* k_cache, float* v_cache, int max_ctx) {
  const int w = KV * hd;
  for (int t = 0; t < T; ++t) {
    const float* row = qkv + (size_t)t * (H + 2 * KV) * hd;
    const size_t dst = ((size_t)slots[t] * max_ctx + positions[t]) * w;
    for (int c = 0; c < w; ++c) {
      k_cache[dst + c] = row[H * hd + c];
      v_cache[dst + c] = row[(H + KV) * hd + c];
    }
  }
}

void attention(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
               const float* k_cache, const float* v_cache, int max_ctx, float* out) {
  const int G = H / KV;
  const size_t rs = (size_t)KV * hd;
  std::vector<double> s;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const float* q = qkv + (size_t)t * (H + 2 * KV) * hd + (size_t)h * hd;
      const int g = h / G, L = positions[t] + 1;
      const float* kb = k_cache + (size_t)slots[t] * max_ctx * rs + (size_t)g * hd;
      const float* vb = v_cache + (size_t)slots[t] * max_ctx * rs + (size_t)g * hd;
      s.assign(L, 0.0);
      double mx = -INFINITY;
      for (int p = 0; p < L; ++p) {
        double a = 0;
        for (int i = 0; i < hd; ++i) a += (double)q[i] * kb[p * rs + i];
        s[p] = a / sqrt((double)hd);
        mx = std::max(mx, s[p]);
      }
      double z = 0;
      for (int p = 0; p < L; ++p) z += (s[p] = exp(s[p] - mx));
      for (int i = 0; i < hd; ++i) {
        double a = 0;
        for (int p = 0; p < L; ++p) a += s[p] * vb[p * rs + i];
        out[(size_t)t * H * hd + (size_t)h * hd + i] = (float)(a / z);
      }
    }
}

void router_select(const float* x, const float* router, const int* expert_slot, int T, int d, int E, int mode, int k,
                   float epsilon, bool renormalize, float* probs, int* ids, float* w, int* count) {
  std::vector<double> p(E);
  std::vector<int> order(E);
  for (int t = 0; t < T; ++t) {
    double mx = -INFINITY, z = 0;
    for (int e = 0; e < E; ++e) {
      double a = 0;
      for (int i = 0; i < d; ++i) a += (double)x[(size_t)t * d + i] * router[(size_t)e * d + i];
      p[e] = a;
      mx = std::max(mx, a);
    }
    for (int e = 0; e < E; ++e) z += (p[e] = exp(p[e] - mx));
    for (int e = 0; e < E; ++e) probs[(size_t)t * E + e] = (float)(p[e] /= z);
    // descending p, ties to the lower index; pruned experts never qualify
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    int n = 0;
    double sum = 0;
    for (int e : order) {
      if (n == k) break;
      if (expert_slot && expert_slot[e] < 0) continue;
      if (mode == DSMOE_SELECT_THRESHOLD && n > 0 && !(E * p[e] > epsilon)) break;
      ids[(size_t)t * k + n] = expert_slot ? expert_slot[e] : e;
      w[(size_t)t * k + n] = (float)p[e];
      sum += p[e];
      ++n;
    }
    if (renormalize)
      for (int j = 0; j < n; ++j) w[(size_t)t * k + j] = (float)(w[(size_t)t * k + j] / sum);
    for (int j = n; j < k; ++j) ids[(size_t)t * k + j] = -1, w[(size_t)t * k + j] = 0.f;
    if (count) count[t] = n;
  }
}

void moe_gate_up(const float* x, const uint16_t* gate_up, const int* ids, int T, int k, int d, int I, float* h) {
  for (int a = 0; a < T * k; ++a) {
    const int e = ids[a];
    if (e < 0) continue;
    const float* xr = x + (size_t)(a / k) * d;
    const uint16_t* W = gate_up + (size_t)e * 2 * I * d;
    for (int i = 0; i < I; ++i) {
      double g = 0, u = 0;
      for (int c = 0; c < d; ++c) {
        g += (double)xr[c] * bf2f(W[(size_t)i * d + c]);
        u += (double)xr[c] * bf2f(W[(size_t)(I + i) * d + c]);
      }
      h[(size_t)a * I + i] = (float)(silu(g) * u);
    }
  }
}

void moe_down(const float* h, const uint16_t* down, const int* ids, const float* w, int T, int k, int d, int I,
              float* out) {
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < d; ++n) {
      double s = 0;
      for (int j = 0; j < k; ++j) {
        const int e = ids[t * k + j];
        if (e < 0) continue;
        const uint16_t* W = down + (size_t)e * d * I + (size_t)n * I;
        const float* hr = h + ((size_t)t * k + j) * I;
        double a = 0;
        for (int c = 0; c < I; ++c) a += (double)hr[c] * bf2f(W[c]);
        s += w[t * k + j] * a;
      }
      out[(size_t)t * d + n] = (float)(out[(size_t)t * d + n] + s);
    }
}

// the CPU runtime's plain twin (native/src/kernels/sampling.cpp, compiled into this harness): one sampler contract
void sample(const float* logits, int R, int V, float temperature, float top_p, const uint64_t* seeds,
            const int64_t* counters, int* out_tokens) {
  for (int r = 0; r < R; ++r)
    out_tokens[r] = dsmoe::sample_token_ref(logits + (size_t)r * V, V, temperature, top_p, seeds[r], (uint64_t)counters[r]);
}

bool sample_within(const float* l, int V, float temperature, float top_p, uint64_t seed, int64_t counter, int token,
                   double tol) {
  if (token < 0 || token >= V) return false;
  std::vector<double> q(V);
  const double mx = *std::max_element(l, l + V);
  double z = 0;
  for (int i = 0; i < V; ++i) z += (q[i] = exp((l[i] - mx) / temperature));
  double tau = 0;
  if (top_p < 1.f) {
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return q[a] > q[b]; });
    double cum = 0;
    for (int i : order) {
      cum += q[i];
      tau = q[i];
      if (cum >= top_p * z) break;
    }
  }
  if (!(q[token] > 0) || q[token] < tau * (1 - 1e-4)) return false;
  double kept = 0, before = 0;
  for (int i = 0; i < V; ++i)
    if (q[i] > 0 && q[i] >= tau) {
      if (i < token) before += q[i];
      kept += q[i];
    }
  const double u = (double)dsmoe_uniform(seed, (uint64_t)counter) * kept;
  const double slack = tol * kept;
  return u >= before - slack && u < before + q[token] + slack;
}

}  // namespace ref
