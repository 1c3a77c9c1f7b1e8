// Y = X·Wᵀ over f32/bf16/f16 weights: the GEMV path for decode (weights streamed once per call, memory-bound),
// the packed GEMM path for prefill and busy experts (compute-bound, register-blocked micro-kernel).
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "../common/cpu.h"
#include "../common/simd.h"
#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

// The epilogue on one computed value: bias, routing weight, scatter row, accumulate.
static inline void store_out(float acc, int m, int n, float* Y, int ldy, const Epilogue& ep) {
  float v = acc + (ep.bias ? ep.bias[n] : 0.f);
  if (ep.row_scale) v *= ep.row_scale[m];
  size_t row = ep.scatter ? size_t(ep.scatter[m]) : size_t(m);
  float* dst = Y + row * size_t(ldy) + n;
  if (ep.accumulate) *dst += v;
  else *dst = v;
}

// ---------------------------------------------------------------------------------------------------------------
// Reference: one dot product per output, double accumulation.

void linear_ref(const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy, const Epilogue& ep) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) acc += double(X[size_t(m) * K + k]) * load_f32(W, wt, size_t(n) * K + k);
      store_out(float(acc), m, n, Y, ldy, ep);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Scalar fallback (also ARM): same loop structure as the vector paths, f32 accumulation.

static void gemv_scalar_rows(const float* X, int M, int K, const void* W, DType wt, int n0, int n1, float* Y, int ldy,
                             const Epilogue& ep) {
  for (int n = n0; n < n1; ++n)
    for (int m = 0; m < M; ++m) {
      float acc = 0;
      for (int k = 0; k < K; ++k) acc += X[size_t(m) * K + k] * load_f32(W, wt, size_t(n) * K + k);
      store_out(acc, m, n, Y, ldy, ep);
    }
}

#if DSMOE_X86
// ---------------------------------------------------------------------------------------------------------------
// AVX2 GEMV: MT tokens × RN weight rows per tile; each weight vector is loaded (and widened) once for all tokens.

template <DType WT, int MT, int RN>
DSMOE_AVX2 static void gemv_tile_avx2(const float* X, int K, const void* W, int n0, float* out /*[MT][RN]*/) {
  __m256 acc[MT][RN];
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) acc[m][r] = _mm256_setzero_ps();
  // Decode is bandwidth-bound: one core's hardware prefetcher alone does not keep enough misses in flight, so
  // each 32-element step prefetches the same columns of the next tile (RN rows further on, RN·K elements ahead:
  // the rows are contiguous, so this is the data the next call reads). A second accumulator set (acc2) halves the
  // FMA dependency chains of a single token. Prefetch never faults, so running past the matrix end is harmless.
  constexpr size_t esz = WT == DType::F32 ? 4 : 2;
  const char* base = static_cast<const char*>(W);
  __m256 acc2[MT][RN];
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) acc2[m][r] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 32 <= K; k += 32) {
    for (int r = 0; r < RN; ++r) {
      const char* ahead = base + (size_t(n0 + r + RN) * K + k) * esz;
      for (size_t line = 0; line < 32 * esz; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);
    }
    for (int kk = 0; kk < 32; kk += 16) {
      __m256 w[RN], v[RN];
      for (int r = 0; r < RN; ++r) w[r] = load8(W, WT, size_t(n0 + r) * K + k + kk);
      for (int r = 0; r < RN; ++r) v[r] = load8(W, WT, size_t(n0 + r) * K + k + kk + 8);
      for (int m = 0; m < MT; ++m) {
        __m256 x = _mm256_loadu_ps(X + size_t(m) * K + k + kk);
        __m256 y = _mm256_loadu_ps(X + size_t(m) * K + k + kk + 8);
        for (int r = 0; r < RN; ++r) {
          acc[m][r] = _mm256_fmadd_ps(w[r], x, acc[m][r]);
          // Several tokens already give independent chains, and a second set would spill registers.
          if constexpr (MT == 1) acc2[m][r] = _mm256_fmadd_ps(v[r], y, acc2[m][r]);
          else acc[m][r] = _mm256_fmadd_ps(v[r], y, acc[m][r]);
        }
      }
    }
  }
  for (; k + 8 <= K; k += 8) {
    __m256 w[RN];
    for (int r = 0; r < RN; ++r) w[r] = load8(W, WT, size_t(n0 + r) * K + k);
    for (int m = 0; m < MT; ++m) {
      __m256 x = _mm256_loadu_ps(X + size_t(m) * K + k);
      for (int r = 0; r < RN; ++r) acc[m][r] = _mm256_fmadd_ps(w[r], x, acc[m][r]);
    }
  }
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) out[m * RN + r] = hsum8(MT == 1 ? _mm256_add_ps(acc[m][r], acc2[m][r]) : acc[m][r]);
  for (; k < K; ++k)  // K not a multiple of 8
    for (int r = 0; r < RN; ++r) {
      float w = load_f32(W, WT, size_t(n0 + r) * K + k);
      for (int m = 0; m < MT; ++m) out[m * RN + r] += w * X[size_t(m) * K + k];
    }
}

template <DType WT, int MT>
DSMOE_AVX2 static void gemv_rows_avx2(const float* X, int K, const void* W, int n0, int n1, float* Y, int ldy,
                                      int m0, const Epilogue& ep) {
  constexpr int RN = MT <= 2 ? 4 : 2;
  float out[MT * RN];
  int n = n0;
  for (; n + RN <= n1; n += RN) {
    gemv_tile_avx2<WT, MT, RN>(X, K, W, n, out);
    for (int m = 0; m < MT; ++m)
      for (int r = 0; r < RN; ++r) store_out(out[m * RN + r], m0 + m, n + r, Y, ldy, ep);
  }
  for (; n < n1; ++n) {
    gemv_tile_avx2<WT, MT, 1>(X, K, W, n, out);
    for (int m = 0; m < MT; ++m) store_out(out[m], m0 + m, n, Y, ldy, ep);
  }
}

template <DType WT>
DSMOE_AVX2 static void gemv_avx2(const float* X, int M, int K, const void* W, int n0, int n1, float* Y, int ldy,
                                 const Epilogue& ep) {
  for (int m = 0; m < M; m += 4) {
    const float* Xm = X + size_t(m) * K;
    switch (std::min(4, M - m)) {
      case 1: gemv_rows_avx2<WT, 1>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
      case 2: gemv_rows_avx2<WT, 2>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
      case 3: gemv_rows_avx2<WT, 3>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
      default: gemv_rows_avx2<WT, 4>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX-512 GEMV: same tiling, 16 lanes.

template <DType WT, int MT, int RN>
DSMOE_AVX512 static void gemv_tile_avx512(const float* X, int K, const void* W, int n0, float* out) {
  __m512 acc[MT][RN];
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) acc[m][r] = _mm512_setzero_ps();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 w[RN];
    for (int r = 0; r < RN; ++r) w[r] = load16(W, WT, size_t(n0 + r) * K + k);
    for (int m = 0; m < MT; ++m) {
      __m512 x = _mm512_loadu_ps(X + size_t(m) * K + k);
      for (int r = 0; r < RN; ++r) acc[m][r] = _mm512_fmadd_ps(w[r], x, acc[m][r]);
    }
  }
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) out[m * RN + r] = hsum16(acc[m][r]);
  for (; k < K; ++k)
    for (int r = 0; r < RN; ++r) {
      float w = load_f32(W, WT, size_t(n0 + r) * K + k);
      for (int m = 0; m < MT; ++m) out[m * RN + r] += w * X[size_t(m) * K + k];
    }
}

template <DType WT, int MT>
DSMOE_AVX512 static void gemv_rows_avx512(const float* X, int K, const void* W, int n0, int n1, float* Y, int ldy,
                                          int m0, const Epilogue& ep) {
  constexpr int RN = 4;
  float out[MT * RN];
  int n = n0;
  for (; n + RN <= n1; n += RN) {
    gemv_tile_avx512<WT, MT, RN>(X, K, W, n, out);
    for (int m = 0; m < MT; ++m)
      for (int r = 0; r < RN; ++r) store_out(out[m * RN + r], m0 + m, n + r, Y, ldy, ep);
  }
  for (; n < n1; ++n) {
    gemv_tile_avx512<WT, MT, 1>(X, K, W, n, out);
    for (int m = 0; m < MT; ++m) store_out(out[m], m0 + m, n, Y, ldy, ep);
  }
}

template <DType WT>
DSMOE_AVX512 static void gemv_avx512(const float* X, int M, int K, const void* W, int n0, int n1, float* Y, int ldy,
                                     const Epilogue& ep) {
  for (int m = 0; m < M; m += 4) {
    const float* Xm = X + size_t(m) * K;
    switch (std::min(4, M - m)) {
      case 1: gemv_rows_avx512<WT, 1>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
      case 2: gemv_rows_avx512<WT, 2>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
      case 3: gemv_rows_avx512<WT, 3>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
      default: gemv_rows_avx512<WT, 4>(Xm, K, W, n0, n1, Y, ldy, m, ep); break;
    }
  }
}
#endif

void linear_gemv(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep) {
  Simd level = simd_level();
  // Split by output rows: each thread streams its own slice of the weights.
  parallel_for(pool, size_t(N), 16, [&](size_t b, size_t e, int) {
    int n0 = int(b), n1 = int(e);
#if DSMOE_X86
    if (level == Simd::Avx512) {
      if (wt == DType::F32) gemv_avx512<DType::F32>(X, M, K, W, n0, n1, Y, ldy, ep);
      else if (wt == DType::BF16) gemv_avx512<DType::BF16>(X, M, K, W, n0, n1, Y, ldy, ep);
      else gemv_avx512<DType::F16>(X, M, K, W, n0, n1, Y, ldy, ep);
      return;
    }
    if (level == Simd::Avx2) {
      if (wt == DType::F32) gemv_avx2<DType::F32>(X, M, K, W, n0, n1, Y, ldy, ep);
      else if (wt == DType::BF16) gemv_avx2<DType::BF16>(X, M, K, W, n0, n1, Y, ldy, ep);
      else gemv_avx2<DType::F16>(X, M, K, W, n0, n1, Y, ldy, ep);
      return;
    }
#endif
    (void)level;
    gemv_scalar_rows(X, M, K, W, wt, n0, n1, Y, ldy, ep);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM (BLIS-style): X is packed once into strips of MR rows interleaved by k (Ap [strip][K][MR]), so the
// micro-kernel's broadcasts read consecutive floats. For each block of NR weight rows and each slice of KC
// columns of K, the weights are widened once into a packed panel Bp [KC, NR] (16 KiB at NR = 16: it stays in L1)
// and every strip runs the register-blocked micro-kernel over it, accumulating into a C buffer [strips·MR, NR]
// that the epilogue (bias, routing weight, scatter) empties at the end.

struct AlignedFloats {
  float* p;
  explicit AlignedFloats(size_t n) : p(static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64))) {}
  ~AlignedFloats() { std::free(p); }
};

// Reference-style packing of columns [k0, k0 + kc): Bp[k·NR + j] = W[n0 + j, k0 + k], zero for rows past N.
static void pack_scalar(const void* W, DType wt, int K, int k0, int kc, int N, int n0, int NR, float* Bp) {
  for (int j = 0; j < NR; ++j) {
    if (n0 + j < N) {
      for (int k = 0; k < kc; ++k) Bp[size_t(k) * NR + j] = load_f32(W, wt, size_t(n0 + j) * K + k0 + k);
    } else {
      for (int k = 0; k < kc; ++k) Bp[size_t(k) * NR + j] = 0.f;
    }
  }
}

static void gemm_scalar_block(const float* X, int M, int K, const float* Bp, int NR, int n0, int N, float* Y, int ldy,
                              const Epilogue& ep) {
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < NR && n0 + j < N; ++j) {
      float acc = 0;
      for (int k = 0; k < K; ++k) acc += X[size_t(m) * K + k] * Bp[size_t(k) * NR + j];
      store_out(acc, m, n0 + j, Y, ldy, ep);
    }
}

#if DSMOE_X86
// 8×8 transpose of widened weights: 8 rows × 8 k → 8 panel rows (k) × 8 columns. Keeps packing cheap next to the
// micro-kernel even for experts with a handful of tokens.
DSMOE_AVX2 static inline void transpose8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <DType WT>
DSMOE_AVX2 static void pack_avx2(const void* W, int K, int k0, int kc, int N, int n0, int NR, float* Bp) {
  if (n0 + NR > N) {  // edge block: padded with zeros
    pack_scalar(W, WT, K, k0, kc, N, n0, NR, Bp);
    return;
  }
  int k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int j = 0; j < NR; j += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = load8(W, WT, size_t(n0 + j + i) * K + k0 + k);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(Bp + size_t(k + i) * NR + j, r[i]);
    }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j) Bp[size_t(k) * NR + j] = load_f32(W, WT, size_t(n0 + j) * K + k0 + k);
}

// C[6, 16] (+)= Ap[kc, 6] · Bp[kc, 16]: 12 accumulators in named registers (GCC keeps an accumulator array in
// memory), per k two panel loads, six broadcasts of consecutive floats and twelve FMAs.
DSMOE_AVX2 static void ukernel_avx2(int kc, const float* Ap, const float* Bp, float* C /*[6][16]*/, bool accumulate) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (accumulate) {
    c00 = _mm256_load_ps(C + 0); c01 = _mm256_load_ps(C + 8); c10 = _mm256_load_ps(C + 16); c11 = _mm256_load_ps(C + 24);
    c20 = _mm256_load_ps(C + 32); c21 = _mm256_load_ps(C + 40); c30 = _mm256_load_ps(C + 48); c31 = _mm256_load_ps(C + 56);
    c40 = _mm256_load_ps(C + 64); c41 = _mm256_load_ps(C + 72); c50 = _mm256_load_ps(C + 80); c51 = _mm256_load_ps(C + 88);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
  for (int k = 0; k < kc; ++k) {
    const float* a = Ap + size_t(k) * 6;
    __m256 b0 = _mm256_load_ps(Bp + size_t(k) * 16), b1 = _mm256_load_ps(Bp + size_t(k) * 16 + 8);
    __m256 x;
    x = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  _mm256_store_ps(C + 0, c00); _mm256_store_ps(C + 8, c01); _mm256_store_ps(C + 16, c10); _mm256_store_ps(C + 24, c11);
  _mm256_store_ps(C + 32, c20); _mm256_store_ps(C + 40, c21); _mm256_store_ps(C + 48, c30); _mm256_store_ps(C + 56, c31);
  _mm256_store_ps(C + 64, c40); _mm256_store_ps(C + 72, c41); _mm256_store_ps(C + 80, c50); _mm256_store_ps(C + 88, c51);
}

template <DType WT>
DSMOE_AVX512 static void pack_avx512(const void* W, int K, int k0, int kc, int N, int n0, int NR, float* Bp) {
  if (n0 + NR > N) {
    pack_scalar(W, WT, K, k0, kc, N, n0, NR, Bp);
    return;
  }
  // Widen 16 k at a time per row and scatter into the panel: AVX-512 machines have the load/store bandwidth.
  alignas(64) float tmp[16];
  int k = 0;
  for (; k + 16 <= kc; k += 16)
    for (int j = 0; j < NR; ++j) {
      _mm512_store_ps(tmp, load16(W, WT, size_t(n0 + j) * K + k0 + k));
      for (int i = 0; i < 16; ++i) Bp[size_t(k + i) * NR + j] = tmp[i];
    }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j) Bp[size_t(k) * NR + j] = load_f32(W, WT, size_t(n0 + j) * K + k0 + k);
}

// C[8, 32] (+)= Ap[kc, 8] · Bp[kc, 32]: 16 zmm accumulators in named registers, per k two panel loads, eight
// broadcasts of consecutive floats and sixteen FMAs.
#define DSMOE_ROW512(i)                      \
  x = _mm512_set1_ps(a[i]);                  \
  c##i##0 = _mm512_fmadd_ps(x, b0, c##i##0); \
  c##i##1 = _mm512_fmadd_ps(x, b1, c##i##1);
DSMOE_AVX512 static void ukernel_avx512(int kc, const float* Ap, const float* Bp, float* C /*[8][32]*/, bool accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  if (accumulate) {
    c00 = _mm512_load_ps(C + 0); c01 = _mm512_load_ps(C + 16); c10 = _mm512_load_ps(C + 32); c11 = _mm512_load_ps(C + 48);
    c20 = _mm512_load_ps(C + 64); c21 = _mm512_load_ps(C + 80); c30 = _mm512_load_ps(C + 96); c31 = _mm512_load_ps(C + 112);
    c40 = _mm512_load_ps(C + 128); c41 = _mm512_load_ps(C + 144); c50 = _mm512_load_ps(C + 160); c51 = _mm512_load_ps(C + 176);
    c60 = _mm512_load_ps(C + 192); c61 = _mm512_load_ps(C + 208); c70 = _mm512_load_ps(C + 224); c71 = _mm512_load_ps(C + 240);
  }
  for (int k = 0; k < kc; ++k) {
    const float* a = Ap + size_t(k) * 8;
    __m512 b0 = _mm512_load_ps(Bp + size_t(k) * 32), b1 = _mm512_load_ps(Bp + size_t(k) * 32 + 16);
    __m512 x;
    DSMOE_ROW512(0) DSMOE_ROW512(1) DSMOE_ROW512(2) DSMOE_ROW512(3)
    DSMOE_ROW512(4) DSMOE_ROW512(5) DSMOE_ROW512(6) DSMOE_ROW512(7)
  }
  __m512 out[16] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71};
  for (int i = 0; i < 16; ++i) _mm512_store_ps(C + i * 16, out[i]);
}
#undef DSMOE_ROW512
#endif

void linear_gemm(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep) {
  Simd level = simd_level();
#if DSMOE_X86
  if (level == Simd::Avx2 || level == Simd::Avx512) {
    const bool z = level == Simd::Avx512;
    const int NR = z ? 32 : 16, MR = z ? 8 : 6, KC = 256;
    const int strips = (M + MR - 1) / MR;
    // Ap [strips][K][MR]; rows past M repeat row M−1 (computed, never stored).
    AlignedFloats Ap(size_t(strips) * K * MR);
    parallel_for(pool, size_t(strips), 4, [&](size_t s0, size_t s1, int) {
      for (size_t st = s0; st < s1; ++st)
        for (int i = 0; i < MR; ++i) {
          const float* src = X + size_t(std::min(int(st) * MR + i, M - 1)) * K;
          float* dst = Ap.p + st * K * MR + i;
          for (int k = 0; k < K; ++k) dst[size_t(k) * MR] = src[k];
        }
    });
    size_t blocks = (size_t(N) + NR - 1) / NR;
    parallel_for(pool, blocks, 1, [&](size_t b0, size_t b1, int) {
      AlignedFloats panel(size_t(KC) * NR);        // [KC, NR]
      AlignedFloats C(size_t(strips) * MR * NR);   // [strips·MR, NR]
      for (size_t b = b0; b < b1; ++b) {
        int n0 = int(b) * NR;
        for (int k0 = 0; k0 < K; k0 += KC) {
          int kc = std::min(KC, K - k0);
          if (z) {
            if (wt == DType::F32) pack_avx512<DType::F32>(W, K, k0, kc, N, n0, NR, panel.p);
            else if (wt == DType::BF16) pack_avx512<DType::BF16>(W, K, k0, kc, N, n0, NR, panel.p);
            else pack_avx512<DType::F16>(W, K, k0, kc, N, n0, NR, panel.p);
            for (int st = 0; st < strips; ++st)
              ukernel_avx512(kc, Ap.p + (size_t(st) * K + k0) * MR, panel.p, C.p + size_t(st) * MR * NR, k0 > 0);
          } else {
            if (wt == DType::F32) pack_avx2<DType::F32>(W, K, k0, kc, N, n0, NR, panel.p);
            else if (wt == DType::BF16) pack_avx2<DType::BF16>(W, K, k0, kc, N, n0, NR, panel.p);
            else pack_avx2<DType::F16>(W, K, k0, kc, N, n0, NR, panel.p);
            for (int st = 0; st < strips; ++st)
              ukernel_avx2(kc, Ap.p + (size_t(st) * K + k0) * MR, panel.p, C.p + size_t(st) * MR * NR, k0 > 0);
          }
        }
        int cols = std::min(NR, N - n0);
        for (int m = 0; m < M; ++m)
          for (int j = 0; j < cols; ++j) store_out(C.p[size_t(m) * NR + j], m, n0 + j, Y, ldy, ep);
      }
    });
    return;
  }
#endif
  (void)level;
  const int NR = 16;
  size_t blocks = (size_t(N) + NR - 1) / NR;
  parallel_for(pool, blocks, 1, [&](size_t b0, size_t b1, int) {
    AlignedFloats panel(size_t(K) * NR);  // [K, NR]
    for (size_t b = b0; b < b1; ++b) {
      int n0 = int(b) * NR;
      pack_scalar(W, wt, K, 0, K, N, n0, NR, panel.p);
      gemm_scalar_block(X, M, K, panel.p, NR, n0, N, Y, ldy, ep);
    }
  });
}

void linear(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
            const Epilogue& ep) {
  if (M <= 0 || N <= 0) return;
  if (M <= 4) linear_gemv(pool, X, M, K, W, wt, N, Y, ldy, ep);
  else linear_gemm(pool, X, M, K, W, wt, N, Y, ldy, ep);
}

}  // namespace dsmoe
