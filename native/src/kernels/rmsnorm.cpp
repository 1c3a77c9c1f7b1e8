// RMSNorm: x / sqrt(mean(x²) + eps) ⊙ w, one row per token.
#include <cmath>

#include "../common/cpu.h"
#include "../common/simd.h"
#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

void rmsnorm_ref(const float* x, const float* w, int T, int d, float eps, float* out) {
  for (int t = 0; t < T; ++t) {
    const float* r = x + size_t(t) * d;
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += double(r[j]) * r[j];
    float inv = float(1.0 / std::sqrt(ss / d + eps));
    for (int j = 0; j < d; ++j) out[size_t(t) * d + j] = r[j] * inv * w[j];
  }
}

#if DSMOE_X86
DSMOE_AVX2 static void rmsnorm_row_avx2(const float* r, const float* w, int d, float eps, float* o) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= d; j += 16) {
    __m256 a = _mm256_loadu_ps(r + j), b = _mm256_loadu_ps(r + j + 8);
    acc0 = _mm256_fmadd_ps(a, a, acc0);
    acc1 = _mm256_fmadd_ps(b, b, acc1);
  }
  for (; j + 8 <= d; j += 8) {
    __m256 a = _mm256_loadu_ps(r + j);
    acc0 = _mm256_fmadd_ps(a, a, acc0);
  }
  double ss = hsum8(_mm256_add_ps(acc0, acc1));
  for (; j < d; ++j) ss += double(r[j]) * r[j];
  float inv = float(1.0 / std::sqrt(ss / d + eps));
  __m256 s = _mm256_set1_ps(inv);
  j = 0;
  for (; j + 8 <= d; j += 8)
    _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(r + j), s), _mm256_loadu_ps(w + j)));
  for (; j < d; ++j) o[j] = r[j] * inv * w[j];
}
#endif

void rmsnorm(ThreadPool* pool, const float* x, const float* w, int T, int d, float eps, float* out) {
  bool vec = simd_level() >= Simd::Avx2;
  parallel_for(pool, size_t(T), 4, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
#if DSMOE_X86
      if (vec) {
        rmsnorm_row_avx2(x + t * d, w, d, eps, out + t * d);
        continue;
      }
#endif
      (void)vec;
      rmsnorm_ref(x + t * d, w, 1, d, eps, out + t * d);
    }
  });
}

}  // namespace dsmoe
