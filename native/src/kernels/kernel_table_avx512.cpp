// The AVX-512 (F, BW, VL) kernel table: the shared bodies over 16-lane vectors, the int8 GEMV with VNNI (on 256-bit
// registers), and the hand-scheduled 8 × 32 GEMM micro-kernel with its panel packer.
#include <algorithm>
#include <cmath>
#include <vector>

#include "isa.h"
#include "isa_int8.h"
#include "kernel_table.h"

#if DSMOE_X86
namespace dsmoe {
namespace avx512_kernels {

#define DSMOE_TARGET DSMOE_AVX512
using Ops = Avx512Ops;
#include "gemv_isa.inc"
#include "gemv_bf16_isa.inc"
#include "rows_isa.inc"
#undef DSMOE_TARGET
#define DSMOE_TARGET DSMOE_AVX512VNNI
using I8 = VnniInt8;
#include "gemv_q8_isa.inc"
#undef DSMOE_TARGET

constexpr int MR = 8, NR = 32;

// Widen 16 k at a time per row and scatter into the panel: AVX-512 machines have the load/store bandwidth.
template <DType WT>
DSMOE_AVX512 static void pack(const void* W, int K, int k0, int kc, int N, int n0, float* panel) {
  if (n0 + NR > N) {
    pack_panel_plain(W, WT, K, k0, kc, N, n0, NR, panel);
    return;
  }
  alignas(64) float tmp[16];
  int k = 0;
  for (; k + 16 <= kc; k += 16)
    for (int j = 0; j < NR; ++j) {
      _mm512_store_ps(tmp, Ops::load_w<WT>(W, size_t(n0 + j) * K + k0 + k));
      for (int i = 0; i < 16; ++i) panel[size_t(k + i) * NR + j] = tmp[i];
    }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j) panel[size_t(k) * NR + j] = load_f32(W, WT, size_t(n0 + j) * K + k0 + k);
}

// C[8, 32] (+)= Ap[kc, 8] · panel[kc, 32]: 16 zmm accumulators in named registers, per k two panel loads, eight
// broadcasts of consecutive floats and sixteen FMAs.
#define DSMOE_ROW512(i)                      \
  x = _mm512_set1_ps(a[i]);                  \
  c##i##0 = _mm512_fmadd_ps(x, b0, c##i##0); \
  c##i##1 = _mm512_fmadd_ps(x, b1, c##i##1);
DSMOE_AVX512 static void microkernel(int kc, const float* Ap, const float* panel, float* C /*[8][32]*/, bool accumulate) {
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
    __m512 b0 = _mm512_load_ps(panel + size_t(k) * 32), b1 = _mm512_load_ps(panel + size_t(k) * 32 + 16);
    __m512 x;
    DSMOE_ROW512(0) DSMOE_ROW512(1) DSMOE_ROW512(2) DSMOE_ROW512(3)
    DSMOE_ROW512(4) DSMOE_ROW512(5) DSMOE_ROW512(6) DSMOE_ROW512(7)
  }
  __m512 out[16] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71};
  for (int i = 0; i < 16; ++i) _mm512_store_ps(C + i * 16, out[i]);
}
#undef DSMOE_ROW512

}  // namespace avx512_kernels

// Two tables: with VNNI, and without (an AVX-512 CPU before VNNI, or DSMOE_VNNI=0), whose int8 GEMV is AVX2's.
const KernelTable& avx512_kernel_table(bool vnni) {
  using namespace avx512_kernels;
  static const KernelTable with_vnni = DSMOE_KERNEL_TABLE(Simd::Avx512, true);
  static const KernelTable without = [] {
    KernelTable t = with_vnni;
    t.vnni = false;
    for (int i = 0; i < kDTypeCount; ++i) t.gemv_q8[i] = avx2_kernel_table().gemv_q8[i];
    return t;
  }();
  return vnni ? with_vnni : without;
}

}  // namespace dsmoe
#endif
