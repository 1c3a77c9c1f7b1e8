// Grouped-query causal attention over the KV cache: query head h reads kv head h / (H / KV); token t attends to
// positions 0..pos[t] of its own slot (the batch's own keys were written to the cache before this runs).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/cpu.h"
#include "../common/simd.h"
#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

void attention_ref(const float* q, const float* kcache, const float* vcache, const int32_t* slot, const int32_t* pos,
                   int T, const AttentionShape& s, float* out) {
  const int group = s.H / s.KV;
  const size_t row = size_t(s.KV) * s.hd;  // one cache position
  const double scale = 1.0 / std::sqrt(double(s.hd));
  std::vector<double> score;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s.H; ++h) {
      const float* qv = q + (size_t(t) * s.H + h) * s.hd;
      const float* K = kcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      const float* V = vcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      int n = pos[t] + 1;
      score.assign(n, 0);
      double mx = -1e300;
      for (int p = 0; p < n; ++p) {
        double dot = 0;
        for (int i = 0; i < s.hd; ++i) dot += double(qv[i]) * K[p * row + i];
        score[p] = dot * scale;
        mx = std::max(mx, score[p]);
      }
      double sum = 0;
      for (int p = 0; p < n; ++p) sum += (score[p] = std::exp(score[p] - mx));
      float* o = out + (size_t(t) * s.H + h) * s.hd;
      for (int i = 0; i < s.hd; ++i) {
        double acc = 0;
        for (int p = 0; p < n; ++p) acc += score[p] * V[p * row + i];
        o[i] = float(acc / sum);
      }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fast path: vector dot / axpy over the head dimension, one (token, head) pair per work item.

static float dot_scalar(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
static void axpy_scalar(float w, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += w * x[i];
}

#if DSMOE_X86
DSMOE_AVX2 static float dot_avx2(const float* a, const float* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = hsum8(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
DSMOE_AVX2 static void axpy_avx2(float w, const float* x, float* y, int n) {
  __m256 wv = _mm256_set1_ps(w);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += w * x[i];
}
#endif

void attention(ThreadPool* pool, const float* q, const float* kcache, const float* vcache, const int32_t* slot,
               const int32_t* pos, int T, const AttentionShape& s, float* out) {
  const bool vec = simd_level() >= Simd::Avx2;
  const int group = s.H / s.KV;
  const size_t row = size_t(s.KV) * s.hd;
  const float scale = float(1.0 / std::sqrt(double(s.hd)));
  parallel_for(pool, size_t(T) * s.H, 1, [&](size_t b, size_t e, int) {
    std::vector<float> score;
    for (size_t item = b; item < e; ++item) {
      int t = int(item / s.H), h = int(item % s.H);
      const float* qv = q + item * s.hd;
      const float* K = kcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      const float* V = vcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      int n = pos[t] + 1;
      score.resize(n);
      float mx = -INFINITY;
      for (int p = 0; p < n; ++p) {
#if DSMOE_X86
        float d = vec ? dot_avx2(qv, K + p * row, s.hd) : dot_scalar(qv, K + p * row, s.hd);
#else
        float d = dot_scalar(qv, K + p * row, s.hd);
#endif
        score[p] = d * scale;
        mx = std::max(mx, score[p]);
      }
      float sum = 0;
      for (int p = 0; p < n; ++p) sum += (score[p] = std::exp(score[p] - mx));
      float* o = out + item * s.hd;
      std::fill(o, o + s.hd, 0.f);
      float inv = 1.f / sum;
      for (int p = 0; p < n; ++p) {
#if DSMOE_X86
        if (vec) axpy_avx2(score[p] * inv, V + p * row, o, s.hd);
        else axpy_scalar(score[p] * inv, V + p * row, o, s.hd);
#else
        axpy_scalar(score[p] * inv, V + p * row, o, s.hd);
#endif
      }
    }
  });
  (void)vec;
}

}  // namespace dsmoe
