// The routed experts of one layer over the grouped rows (moe_align.cpp):
//   gather x rows → [R, d];  fused gate+up (one [2I, d] weight per expert) → [R, 2I];  SwiGLU → [R, I];
//   down [d, I] with the routing weight applied in the epilogue → [R, d];  combine: scatter-add into each token.
// linear() takes the GEMV path for an expert with ≤ 4 tokens and the packed GEMM otherwise; over quantized weights
// the GEMV experts' rows are quantized to Q8 blocks once per layer (kernels.h, Q8Act) for the int8 GEMV.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

static inline float silu(float g) { return g / (1.f + std::exp(-g)); }

void swiglu_ref(const float* gu, int n, int I, float* h) {
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < I; ++i) {
      double g = gu[size_t(r) * 2 * I + i], u = gu[size_t(r) * 2 * I + I + i];
      h[size_t(r) * I + i] = float(g / (1.0 + std::exp(-g)) * u);
    }
}

void swiglu(const float* gu, int n, int I, float* h) {
  for (int r = 0; r < n; ++r) {
    const float* g = gu + size_t(r) * 2 * I;
    const float* u = g + I;
    float* o = h + size_t(r) * I;
    for (int i = 0; i < I; ++i) o[i] = silu(g[i]) * u[i];
  }
}

void moe_ffn_ref(const float* x, int T, const ExpertWeights& w, int E, const int32_t* offsets, const int32_t* rows,
                 const float* row_weight, float* y) {
  (void)T;
  const int d = w.d, I = w.I;
  std::vector<float> gu(size_t(2) * I), h(I);
  for (int e = 0; e < E; ++e) {
    int slot = w.slot_of_expert[e];
    if (offsets[e + 1] == offsets[e] || slot < 0) continue;
    const char* Wgu = static_cast<const char*>(w.gate_up) + bytes_of(w.dtype, size_t(slot) * 2 * I * d);
    const char* Wd = static_cast<const char*>(w.down) + bytes_of(w.dtype, size_t(slot) * d * I);
    // As moe_ffn: an expert of ≤ int8_gemv_rows() rows over quantized weights computes from Q8 activations.
    const bool int8 = is_quantized(w.dtype) && offsets[e + 1] - offsets[e] <= int8_gemv_rows();
    Q8Rows q8;
    for (int r = offsets[e]; r < offsets[e + 1]; ++r) {
      const float* xr = x + size_t(rows[r]) * d;
      if (int8) linear_q8_ref(q8.quantize(xr, 1, d), 1, Wgu, w.dtype, 2 * I, gu.data(), 2 * I, Epilogue{});
      else linear_ref(xr, 1, d, Wgu, w.dtype, 2 * I, gu.data(), 2 * I, Epilogue{});
      swiglu_ref(gu.data(), 1, I, h.data());
      Epilogue ep;
      ep.row_scale = row_weight + r;
      ep.scatter = rows + r;
      ep.accumulate = true;
      if (int8) linear_q8_ref(q8.quantize(h.data(), 1, I), 1, Wd, w.dtype, d, y, d, ep);
      else linear_ref(h.data(), 1, I, Wd, w.dtype, d, y, d, ep);
    }
  }
}

// Combine: y[rows[r]] += out[r] for every grouped row (the routing weight is already in out).
void combine_ref(const float* out, const int32_t* rows, int R, int d, float* y) {
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < d; ++j) y[size_t(rows[r]) * d + j] += out[size_t(r) * d + j];
}

void combine(ThreadPool* pool, const float* out, const int32_t* rows, int R, int d, float* y) {
  // Split by columns: a token selected by several experts gets all its rows added by one thread, no races.
  // A decode step's few rows (R·d of a few thousand adds) cost less than a pool synchronisation: run inline.
  const size_t grain = std::max<size_t>(64, size_t(16384) / size_t(std::max(1, R)));
  parallel_for(pool, size_t(d), grain, [&](size_t c0, size_t c1, int) {
    for (int r = 0; r < R; ++r) {
      const float* src = out + size_t(r) * d;
      float* dst = y + size_t(rows[r]) * d;
      for (size_t j = c0; j < c1; ++j) dst[j] += src[j];
    }
  });
}

// Grows v to at least n elements (never shrinks it) and returns its data.
static float* at_least(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The whole layer's experts in one pool job per phase (gate+up, then down), however many experts are active: work
// items are (expert, block of output rows), so a decode step over 32 experts costs as few synchronisations as one
// over 2, and the threads take items from one shared counter, each item about kGemvItemBytes of weights (balanced by
// bytes: a block of down rows, which are I long, has more rows than a block of gate+up rows, which are d long).
// Every output row is computed by the same kernel call sequence whatever block it falls in, so the result does not
// depend on the partition (bit for bit: test_moe_partition).
void moe_ffn(ThreadPool* pool, const float* x, int T, const ExpertWeights& w, int E, const int32_t* offsets,
             const int32_t* rows, const float* row_weight, float* y, MoeScratch* scratch) {
  (void)T;
  const int d = w.d, I = w.I;
  const int R = offsets[E];
  if (R == 0) return;
  constexpr int kBlock = 64;  // GEMM experts' output-row granularity (a multiple of every GEMM panel width)
  MoeScratch local;
  MoeScratch& s = scratch ? *scratch : local;
  float* xs = at_least(s.xs, size_t(R) * d);      // [R, d]   gathered rows, expert by expert
  float* gu = at_least(s.gu, size_t(R) * 2 * I);  // [R, 2I]
  float* h = at_least(s.h, size_t(R) * I);        // [R, I]
  float* out = at_least(s.out, size_t(R) * d);    // [R, d]   weighted expert outputs
  parallel_for(pool, size_t(R), 16, [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; ++r) std::copy(x + size_t(rows[r]) * d, x + size_t(rows[r] + 1) * d, xs + r * d);
  });
  struct Item { int expert, n0, n1; };
  int active = 0;
  for (int e = 0; e < E; ++e) active += offsets[e + 1] > offsets[e] && w.slot_of_expert[e] >= 0;
  const int threads = pool ? pool->size() : 1;
  // GEMV experts (≤ 4 rows): pure weight streaming, items of ≈ kGemvItemBytes (a multiple of 4 rows, the GEMV's
  // tile). A GEMM expert packs its rows once per item, so it is split only as far as needed to give every thread work.
  const int split = std::max(1, (4 * threads + active - 1) / std::max(1, active));
  auto items_for = [&](int N, int K) {
    const size_t row_bytes = std::max<size_t>(1, bytes_of(w.dtype, size_t(K)));
    const int gemv_rows = int(std::max<size_t>(4, kGemvItemBytes / row_bytes / 4 * 4));
    std::vector<Item> items;
    for (int e = 0; e < E; ++e) {
      int n = offsets[e + 1] - offsets[e];
      if (n == 0 || w.slot_of_expert[e] < 0) continue;
      int width = gemv_rows;
      if (n > 4) width = std::max(kBlock, ((N + split - 1) / split + kBlock - 1) / kBlock * kBlock);
      for (int n0 = 0; n0 < N; n0 += width) items.push_back({e, n0, std::min(N, n0 + width)});
    }
    return items;
  };
  // Over quantized weights the GEMV experts take the int8 path (linear.cpp); their rows are quantized once here for
  // all their items rather than once per item.
  bool int8 = false;
  if (is_quantized(w.dtype))
    for (int e = 0; e < E; ++e) {
      const int n = offsets[e + 1] - offsets[e];
      int8 |= n > 0 && n <= int8_gemv_rows() && w.slot_of_expert[e] >= 0;
    }
  Q8Act xq{};
  if (int8) xq = s.q8.quantize(xs, R, d);
  // Y rows [off, off + n) of one item: the int8 GEMV from the quantized rows, else linear() from the f32 rows.
  auto run = [&](const float* X, const Q8Act& Xq, int off, int n, int K, const void* W, int N, float* Y, int ldy,
                 const Epilogue& ep) {
    if (int8 && n <= int8_gemv_rows()) linear_gemv_q8(nullptr, Xq.row(off), n, W, w.dtype, N, Y, ldy, ep);
    else linear(nullptr, X + size_t(off) * K, n, K, W, w.dtype, N, Y, ldy, ep);
  };
  // gate+up: [n_e, d] · [2I, d]ᵀ, one block of weight rows per item.
  std::vector<Item> items = items_for(2 * I, d);
  parallel_for(pool, items.size(), 1, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) {
      const Item& it = items[i];
      int off = offsets[it.expert], n = offsets[it.expert + 1] - off;
      const char* W = static_cast<const char*>(w.gate_up) + bytes_of(w.dtype, (size_t(w.slot_of_expert[it.expert]) * 2 * I + it.n0) * d);
      run(xs, xq, off, n, d, W, it.n1 - it.n0, gu + size_t(off) * 2 * I + it.n0, 2 * I, Epilogue{});
    }
  });
  parallel_for(pool, size_t(R), 16, [&](size_t b, size_t e, int) { swiglu(gu + b * 2 * I, int(e - b), I, h + b * I); });
  // down with the routing weight in the epilogue: [n_e, I] · [d, I]ᵀ · w.
  Q8Act hq{};
  if (int8) hq = s.q8.quantize(h, R, I);  // xq is done with: the same buffers
  items = items_for(d, I);
  parallel_for(pool, items.size(), 1, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) {
      const Item& it = items[i];
      int off = offsets[it.expert], n = offsets[it.expert + 1] - off;
      const char* W = static_cast<const char*>(w.down) + bytes_of(w.dtype, (size_t(w.slot_of_expert[it.expert]) * d + it.n0) * I);
      Epilogue ep;
      ep.row_scale = row_weight + off;
      run(h, hq, off, n, I, W, it.n1 - it.n0, out + size_t(off) * d + it.n0, d, ep);
    }
  });
  for (int e = 0; e < E; ++e)  // rows routed to a pruned expert contribute nothing
    if (w.slot_of_expert[e] < 0) std::fill(out + size_t(offsets[e]) * d, out + size_t(offsets[e + 1]) * d, 0.f);
  combine(pool, out, rows, R, d, y);
}

}  // namespace dsmoe
