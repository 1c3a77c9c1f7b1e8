// The limits the benchmark reports against: STREAM-style triad bandwidth and the FMA peak, both on the pool.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "../common/cpu.h"
#include "isa.h"
#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double triad_gbs(ThreadPool* pool, size_t bytes_per_array) {
  size_t n = std::max<size_t>(1 << 16, bytes_per_array / sizeof(float));
  std::vector<float> a(n), b(n), c(n);
  // First touch on the threads that use the pages (NUMA-friendly), as STREAM does.
  parallel_for(pool, n, 4096, [&](size_t s, size_t e, int) {
    for (size_t i = s; i < e; ++i) { a[i] = 0; b[i] = 1; c[i] = 2; }
  });
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    double t0 = now_s();
    parallel_for(pool, n, 4096, [&](size_t s, size_t e, int) {
      float* __restrict pa = a.data();
      const float* __restrict pb = b.data();
      const float* __restrict pc = c.data();
      for (size_t i = s; i < e; ++i) pa[i] = pb[i] + 3.f * pc[i];
    });
    best = std::min(best, now_s() - t0);
  }
  volatile float sink = a[n / 2];
  (void)sink;
  return 3.0 * n * sizeof(float) / best / 1e9;
}

// Peak: 12 independent FMA chains per thread (enough to cover latency × pipes on current cores).
static double fma_scalar(long iters) {
  float acc[12] = {0};
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = acc[j] * 0.999f + 0.001f;
  float s = 0;
  for (float v : acc) s += v;
  volatile float sink = s;
  (void)sink;
  return 2.0 * 12 * iters;
}

#if DSMOE_X86
DSMOE_AVX2 static double fma_avx2(long iters) {
  __m256 a[12];
  __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
  for (int j = 0; j < 12; ++j) a[j] = _mm256_set1_ps(float(j));
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) a[j] = _mm256_fmadd_ps(a[j], m, c);
  __m256 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, a[j]);
  volatile float sink = Avx2Ops::hsum(s);
  (void)sink;
  return 2.0 * 8 * 12 * iters;
}
DSMOE_AVX512 static double fma_avx512(long iters) {
  __m512 a[16];
  __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (int j = 0; j < 16; ++j) a[j] = _mm512_set1_ps(float(j));
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 16; ++j) a[j] = _mm512_fmadd_ps(a[j], m, c);
  __m512 s = a[0];
  for (int j = 1; j < 16; ++j) s = _mm512_add_ps(s, a[j]);
  volatile float sink = Avx512Ops::hsum(s);
  (void)sink;
  return 2.0 * 16 * 16 * iters;
}
#endif

double fma_peak_gflops(ThreadPool* pool) {
  Simd level = simd_level();
  int threads = pool ? pool->size() : 1;
  const long iters = 20000000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> flops(threads, 0);
    double t0 = now_s();
    parallel_for(pool, size_t(threads), 1, [&](size_t s, size_t e, int) {
      for (size_t i = s; i < e; ++i) {
#if DSMOE_X86
        if (level == Simd::Avx512) { flops[i] = fma_avx512(iters); continue; }
        if (level == Simd::Avx2) { flops[i] = fma_avx2(iters); continue; }
#endif
        flops[i] = fma_scalar(iters / 4);
      }
    });
    double dt = now_s() - t0, total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / dt / 1e9);
  }
  (void)level;
  return best;
}

}  // namespace dsmoe
