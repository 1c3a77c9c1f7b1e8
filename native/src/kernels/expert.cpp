// The routed experts of one layer, run expert by expert over the grouped rows (moe_align.cpp):
//   gather x rows → [n, d];  fused gate+up (one [2I, d] weight) → [n, 2I];  SwiGLU → [n, I];
//   down [d, I] with the routing weight and the scatter-add to each token's row in the epilogue (the combine).
// linear() takes the GEMV path for an expert with ≤ 4 tokens and the packed GEMM otherwise.
#include <algorithm>
#include <cmath>
#include <vector>

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
  const size_t esz = dtype_size(w.dtype);
  std::vector<float> gu(size_t(2) * I), h(I);
  for (int e = 0; e < E; ++e) {
    int slot = w.slot_of_expert[e];
    if (offsets[e + 1] == offsets[e] || slot < 0) continue;
    const char* Wgu = static_cast<const char*>(w.gate_up) + size_t(slot) * 2 * I * d * esz;
    const char* Wd = static_cast<const char*>(w.down) + size_t(slot) * d * I * esz;
    for (int r = offsets[e]; r < offsets[e + 1]; ++r) {
      const float* xr = x + size_t(rows[r]) * d;
      linear_ref(xr, 1, d, Wgu, w.dtype, 2 * I, gu.data(), 2 * I, Epilogue{});
      swiglu_ref(gu.data(), 1, I, h.data());
      Epilogue ep;
      ep.row_scale = row_weight + r;
      ep.scatter = rows + r;
      ep.accumulate = true;
      linear_ref(h.data(), 1, I, Wd, w.dtype, d, y, d, ep);
    }
  }
}

void moe_ffn(ThreadPool* pool, const float* x, int T, const ExpertWeights& w, int E, const int32_t* offsets,
             const int32_t* rows, const float* row_weight, float* y) {
  (void)T;
  const int d = w.d, I = w.I;
  const size_t esz = dtype_size(w.dtype);
  int most = 0;
  for (int e = 0; e < E; ++e) most = std::max(most, offsets[e + 1] - offsets[e]);
  std::vector<float> xs(size_t(most) * d);      // [n, d]   gathered rows
  std::vector<float> gu(size_t(most) * 2 * I);  // [n, 2I]
  std::vector<float> h(size_t(most) * I);       // [n, I]
  for (int e = 0; e < E; ++e) {
    int n = offsets[e + 1] - offsets[e];
    int slot = w.slot_of_expert[e];
    if (n == 0 || slot < 0) continue;
    const char* Wgu = static_cast<const char*>(w.gate_up) + size_t(slot) * 2 * I * d * esz;
    const char* Wd = static_cast<const char*>(w.down) + size_t(slot) * d * I * esz;
    const int32_t* r = rows + offsets[e];
    for (int i = 0; i < n; ++i) std::copy(x + size_t(r[i]) * d, x + size_t(r[i] + 1) * d, xs.begin() + size_t(i) * d);
    linear(pool, xs.data(), n, d, Wgu, w.dtype, 2 * I, gu.data(), 2 * I, Epilogue{});
    swiglu(gu.data(), n, I, h.data());
    Epilogue ep;
    ep.row_scale = row_weight + offsets[e];
    ep.scatter = r;
    ep.accumulate = true;  // each token appears once per expert, threads split columns: no write conflicts
    linear(pool, h.data(), n, I, Wd, w.dtype, d, y, d, ep);
  }
}

}  // namespace dsmoe
