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

#if defined(__x86_64__)
// ---------------------------------------------------------------------------------------------------------------
// AVX2 GEMV: MT tokens × RN weight rows per tile; each weight vector is loaded (and widened) once for all tokens.

template <DType WT, int MT, int RN>
DSMOE_AVX2 static void gemv_tile_avx2(const float* X, int K, const void* W, int n0, float* out /*[MT][RN]*/) {
  __m256 acc[MT][RN];
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) acc[m][r] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 w[RN];
    for (int r = 0; r < RN; ++r) w[r] = load8(W, WT, size_t(n0 + r) * K + k);
    for (int m = 0; m < MT; ++m) {
      __m256 x = _mm256_loadu_ps(X + size_t(m) * K + k);
      for (int r = 0; r < RN; ++r) acc[m][r] = _mm256_fmadd_ps(w[r], x, acc[m][r]);
    }
  }
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < RN; ++r) out[m * RN + r] = hsum8(acc[m][r]);
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
    for (int r = 0; r < RN; ++r) out[m * RN + r] = _mm512_reduce_add_ps(acc[m][r]);
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
#if defined(__x86_64__)
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
// GEMM: for each block of NR weight rows, widen the rows once into a packed panel Bp [K, NR] (f32), then sweep all
// M rows of X in strips of MR with a register-blocked micro-kernel (MR×NR accumulators stay in registers for the
// whole K loop). The panel (K·NR·4 bytes, 64 KiB at K = 1024) stays in L2 while the strips stream past it.

struct AlignedFloats {
  float* p;
  explicit AlignedFloats(size_t n) : p(static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64))) {}
  ~AlignedFloats() { std::free(p); }
};

// Reference-style packing: Bp[k·NR + j] = W[n0 + j, k], zero for rows past N.
static void pack_scalar(const void* W, DType wt, int K, int N, int n0, int NR, float* Bp) {
  for (int j = 0; j < NR; ++j) {
    if (n0 + j < N) {
      for (int k = 0; k < K; ++k) Bp[size_t(k) * NR + j] = load_f32(W, wt, size_t(n0 + j) * K + k);
    } else {
      for (int k = 0; k < K; ++k) Bp[size_t(k) * NR + j] = 0.f;
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

#if defined(__x86_64__)
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
DSMOE_AVX2 static void pack_avx2(const void* W, int K, int N, int n0, int NR, float* Bp) {
  if (n0 + NR > N) {  // edge block: padded with zeros
    pack_scalar(W, WT, K, N, n0, NR, Bp);
    return;
  }
  int k = 0;
  for (; k + 8 <= K; k += 8)
    for (int j = 0; j < NR; j += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = load8(W, WT, size_t(n0 + j + i) * K + k);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(Bp + size_t(k + i) * NR + j, r[i]);
    }
  for (; k < K; ++k)
    for (int j = 0; j < NR; ++j) Bp[size_t(k) * NR + j] = load_f32(W, WT, size_t(n0 + j) * K + k);
}

// C[mr, 16] = A[mr, K] (row stride lda) · Bp[K, 16], mr ≤ 6: 12 accumulators in named registers (GCC keeps an
// accumulator array in memory), 2 panel loads and 6 broadcasts per k. Rows past mr re-read the last row; their
// results are not stored.
DSMOE_AVX2 static void ukernel_avx2_any(int mr, int K, const float* A, int lda, const float* Bp, float* C) {
  const float* a0 = A;
  const float* a1 = A + size_t(std::min(1, mr - 1)) * lda;
  const float* a2 = A + size_t(std::min(2, mr - 1)) * lda;
  const float* a3 = A + size_t(std::min(3, mr - 1)) * lda;
  const float* a4 = A + size_t(std::min(4, mr - 1)) * lda;
  const float* a5 = A + size_t(std::min(5, mr - 1)) * lda;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int k = 0; k < K; ++k) {
    __m256 b0 = _mm256_load_ps(Bp + size_t(k) * 16), b1 = _mm256_load_ps(Bp + size_t(k) * 16 + 8);
    __m256 a;
    a = _mm256_broadcast_ss(a0 + k); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(a1 + k); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(a2 + k); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(a3 + k); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(a4 + k); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(a5 + k); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
  }
  _mm256_storeu_ps(C + 0, c00); _mm256_storeu_ps(C + 8, c01);
  _mm256_storeu_ps(C + 16, c10); _mm256_storeu_ps(C + 24, c11);
  _mm256_storeu_ps(C + 32, c20); _mm256_storeu_ps(C + 40, c21);
  _mm256_storeu_ps(C + 48, c30); _mm256_storeu_ps(C + 56, c31);
  _mm256_storeu_ps(C + 64, c40); _mm256_storeu_ps(C + 72, c41);
  _mm256_storeu_ps(C + 80, c50); _mm256_storeu_ps(C + 88, c51);
}

template <DType WT>
DSMOE_AVX512 static void pack_avx512(const void* W, int K, int N, int n0, int NR, float* Bp) {
  if (n0 + NR > N) {
    pack_scalar(W, WT, K, N, n0, NR, Bp);
    return;
  }
  // Widen 16 k at a time per row and scatter into the panel: AVX-512 machines have the load/store bandwidth.
  alignas(64) float tmp[16];
  int k = 0;
  for (; k + 16 <= K; k += 16)
    for (int j = 0; j < NR; ++j) {
      _mm512_store_ps(tmp, load16(W, WT, size_t(n0 + j) * K + k));
      for (int i = 0; i < 16; ++i) Bp[size_t(k + i) * NR + j] = tmp[i];
    }
  for (; k < K; ++k)
    for (int j = 0; j < NR; ++j) Bp[size_t(k) * NR + j] = load_f32(W, WT, size_t(n0 + j) * K + k);
}

// C[mr, 32] = A[mr, K] · Bp[K, 32], mr ≤ 8: 16 zmm accumulators in named registers, 2 panel loads and 8
// broadcasts per k; rows past mr re-read the last row and are not stored.
#define DSMOE_ROW512(i)                                   \
  a = _mm512_set1_ps(a##i[k]);                            \
  c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);              \
  c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);
DSMOE_AVX512 static void ukernel_avx512_any(int mr, int K, const float* A, int lda, const float* Bp, float* C) {
  const float* a0 = A;
  const float* a1 = A + size_t(std::min(1, mr - 1)) * lda;
  const float* a2 = A + size_t(std::min(2, mr - 1)) * lda;
  const float* a3 = A + size_t(std::min(3, mr - 1)) * lda;
  const float* a4 = A + size_t(std::min(4, mr - 1)) * lda;
  const float* a5 = A + size_t(std::min(5, mr - 1)) * lda;
  const float* a6 = A + size_t(std::min(6, mr - 1)) * lda;
  const float* a7 = A + size_t(std::min(7, mr - 1)) * lda;
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int k = 0; k < K; ++k) {
    __m512 b0 = _mm512_load_ps(Bp + size_t(k) * 32), b1 = _mm512_load_ps(Bp + size_t(k) * 32 + 16);
    __m512 a;
    DSMOE_ROW512(0) DSMOE_ROW512(1) DSMOE_ROW512(2) DSMOE_ROW512(3)
    DSMOE_ROW512(4) DSMOE_ROW512(5) DSMOE_ROW512(6) DSMOE_ROW512(7)
  }
  __m512 out[16] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71};
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(C + i * 16, out[i]);
}
#undef DSMOE_ROW512
#endif

void linear_gemm(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep) {
  Simd level = simd_level();
#if defined(__x86_64__)
  const int NR = level == Simd::Avx512 ? 32 : 16;
  const int MR = level == Simd::Avx512 ? 8 : 6;
#else
  const int NR = 16, MR = 6;
#endif
  size_t blocks = (size_t(N) + NR - 1) / NR;
  parallel_for(pool, blocks, 1, [&](size_t b0, size_t b1, int) {
    AlignedFloats panel(size_t(K) * NR);  // [K, NR]
    alignas(64) float tile[8 * 32];       // [MR, NR]
    for (size_t b = b0; b < b1; ++b) {
      int n0 = int(b) * NR;
#if defined(__x86_64__)
      if (level == Simd::Avx2 || level == Simd::Avx512) {
        if (level == Simd::Avx512) {
          if (wt == DType::F32) pack_avx512<DType::F32>(W, K, N, n0, NR, panel.p);
          else if (wt == DType::BF16) pack_avx512<DType::BF16>(W, K, N, n0, NR, panel.p);
          else pack_avx512<DType::F16>(W, K, N, n0, NR, panel.p);
        } else {
          if (wt == DType::F32) pack_avx2<DType::F32>(W, K, N, n0, NR, panel.p);
          else if (wt == DType::BF16) pack_avx2<DType::BF16>(W, K, N, n0, NR, panel.p);
          else pack_avx2<DType::F16>(W, K, N, n0, NR, panel.p);
        }
        int cols = std::min(NR, N - n0);
        for (int m = 0; m < M; m += MR) {
          int mr = std::min(MR, M - m);
          if (level == Simd::Avx512) ukernel_avx512_any(mr, K, X + size_t(m) * K, K, panel.p, tile);
          else ukernel_avx2_any(mr, K, X + size_t(m) * K, K, panel.p, tile);
          for (int i = 0; i < mr; ++i)
            for (int j = 0; j < cols; ++j) store_out(tile[i * NR + j], m + i, n0 + j, Y, ldy, ep);
        }
        continue;
      }
#endif
      pack_scalar(W, wt, K, N, n0, NR, panel.p);
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
