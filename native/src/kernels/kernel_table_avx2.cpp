// The AVX2 + FMA + F16C kernel table: the shared bodies over 8-lane vectors (the int8 GEMV's with maddubs), and the hand-scheduled 6 × 16 GEMM
// micro-kernel with its transposing panel packer.
#include <algorithm>
#include <cmath>
#include <vector>

#include "isa.h"
#include "isa_int8.h"
#include "kernel_table.h"

#if DSMOE_X86
namespace dsmoe {
namespace avx2_kernels {

#define DSMOE_TARGET DSMOE_AVX2
using Ops = Avx2Ops;
using I8 = Avx2Int8;
#include "gemv_isa.inc"
#include "gemv_bf16_isa.inc"
#include "gemv_q8_isa.inc"
#include "rows_isa.inc"
#undef DSMOE_TARGET

constexpr int MR = 6, NR = 16;

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
DSMOE_AVX2 static void pack(const void* W, int K, int k0, int kc, int N, int n0, float* panel) {
  if (n0 + NR > N) {  // edge block: padded with zeros
    pack_panel_plain(W, WT, K, k0, kc, N, n0, NR, panel);
    return;
  }
  int k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int j = 0; j < NR; j += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = Ops::load_w<WT>(W, size_t(n0 + j + i) * K + k0 + k);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(panel + size_t(k + i) * NR + j, r[i]);
    }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j) panel[size_t(k) * NR + j] = load_f32(W, WT, size_t(n0 + j) * K + k0 + k);
}

// C[6, 16] (+)= Ap[kc, 6] · panel[kc, 16]: 12 accumulators in named registers (GCC keeps an accumulator array in
// memory), per k two panel loads, six broadcasts of consecutive floats and twelve FMAs.
DSMOE_AVX2 static void microkernel(int kc, const float* Ap, const float* panel, float* C /*[6][16]*/, bool accumulate) {
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
    __m256 b0 = _mm256_load_ps(panel + size_t(k) * 16), b1 = _mm256_load_ps(panel + size_t(k) * 16 + 8);
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

}  // namespace avx2_kernels

const KernelTable& avx2_kernel_table() {
  using namespace avx2_kernels;
  static const KernelTable table = DSMOE_KERNEL_TABLE(Simd::Avx2, false);
  return table;
}

}  // namespace dsmoe
#endif
