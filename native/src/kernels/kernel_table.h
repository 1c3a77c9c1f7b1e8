// The kernel table: for the instruction set in use, one function per (kernel, weight dtype). It is chosen once
// (at load, from the CPU and DSMOE_SIMD, or by set_simd in tests) and every kernel driver calls through it, so no
// kernel repeats an #if / if-chain over ISA × dtype. The drivers (threading, blocking, epilogue) live in
// linear.cpp, rmsnorm.cpp, embedding.cpp and attention.cpp; the bodies here are written once over the primitives
// of isa.h (gemv_isa.inc, rows_isa.inc) and instantiated per ISA in kernel_table_<isa>.cpp, except the GEMM
// micro-kernels and panel packing, which are hand-scheduled per ISA.
#pragma once
#include <cstddef>

#include "../common/arch.h"
#include "../common/cpu.h"
#include "../common/dtype.h"
#include "kernels.h"

namespace dsmoe {

constexpr int kDTypeCount = 7;  // F32, BF16, F16, Q8_0, Q4_0, Q3_A, Q2_A: DType's values index the per-dtype entries
constexpr int kGemmKc = 256;    // GEMM columns of K per packed panel (panel = kGemmKc × nr floats, stays in L1/L2)

struct KernelTable {
  Simd isa;
  bool vnni;  // gemv_q8 uses AVX-512 VNNI (the AVX-512 table; cpu.h's vnni_enabled())
  // Y[m, n] for m < M ≤ 4 (decode), weight rows n0 ≤ n < n1: each weight vector is loaded once for all M tokens.
  void (*gemv[kDTypeCount])(const float* X, int M, int K, const void* W, int n0, int n1, float* Y, int ldy,
                            const Epilogue& ep);
  // The int8 GEMV over quantized weights (null for f32/bf16/f16): the same Y from X quantized to Q8 blocks.
  void (*gemv_q8[kDTypeCount])(const Q8Act& X, int M, const void* W, int n0, int n1, float* Y, int ldy,
                               const Epilogue& ep);
  // Packs weight rows [n0, n0 + nr) × columns [k0, k0 + kc) widened into panel[k · nr + j]; rows past N are zero.
  void (*pack[kDTypeCount])(const void* W, int K, int k0, int kc, int N, int n0, float* panel);
  // C[mr, nr] (+)= Ap[kc, mr] · panel[kc, nr]; C is 64-byte aligned.
  void (*microkernel)(int kc, const float* Ap, const float* panel, float* C, bool accumulate);
  int mr, nr;
  void (*rmsnorm_row)(const float* x, const float* w, int d, float eps, float* out);
  void (*widen_row[kDTypeCount])(const void* src, size_t offset, int d, float* out);  // out[j] = src[offset + j]
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float a, const float* x, float* y, int n);  // y += a·x
};

// The table of one ISA, from the names every kernel_table_<isa>.cpp defines in its own namespace: the shared
// bodies (gemv, gemv_bf16, gemv_q8, rmsnorm_row, widen_row, dot, axpy), its pack and microkernel, and MR × NR.
#define DSMOE_KERNEL_TABLE(ISA, VNNI)                                                                                 \
  KernelTable {                                                                                                  \
    ISA, VNNI,                                                                                                   \
        {gemv<DType::F32>, gemv_bf16, gemv<DType::F16>, gemv<DType::Q8_0>, gemv<DType::Q4_0>,            \
         gemv<DType::Q3_A>, gemv<DType::Q2_A>},                                                                   \
        {nullptr, nullptr, nullptr, gemv_q8<DType::Q8_0>, gemv_q8<DType::Q4_0>, gemv_q8<DType::Q3_A>,           \
         gemv_q8<DType::Q2_A>},                                                                                   \
        {pack<DType::F32>, pack<DType::BF16>, pack<DType::F16>, pack<DType::Q8_0>, pack<DType::Q4_0>,            \
         pack<DType::Q3_A>, pack<DType::Q2_A>},                                                                   \
        microkernel, MR, NR, rmsnorm_row,                                                                        \
        {widen_row<DType::F32>, widen_row<DType::BF16>, widen_row<DType::F16>, widen_row<DType::Q8_0>,           \
         widen_row<DType::Q4_0>, widen_row<DType::Q3_A>, widen_row<DType::Q2_A>},                                 \
        dot, axpy                                                                                                \
  }

// The table for simd_level() (and vnni_enabled()); a reference stays valid (tables are static) until the next set_simd.
const KernelTable& kernel_table();
const KernelTable& kernel_table_for(Simd isa);  // clamped to what this build and CPU have

// One per ISA (kernel_table_<isa>.cpp).
const KernelTable& scalar_kernel_table();
#if DSMOE_X86
const KernelTable& avx2_kernel_table();
const KernelTable& avx512_kernel_table(bool vnni);  // without VNNI, gemv_q8 is the AVX2 table's
#endif

// Panel packing one element at a time (any ISA's edge blocks, where rows past N are zero, and the scalar table).
void pack_panel_plain(const void* W, DType wt, int K, int k0, int kc, int N, int n0, int nr, float* panel);

// The epilogue on one computed value: bias, routing weight, scatter row, accumulate.
inline void store_out(float acc, int m, int n, float* Y, int ldy, const Epilogue& ep) {
  float v = acc + (ep.bias ? ep.bias[n] : 0.f);
  if (ep.row_scale) v *= ep.row_scale[m];
  size_t row = ep.scatter ? size_t(ep.scatter[m]) : size_t(m);
  float* dst = Y + row * size_t(ldy) + n;
  if (ep.accumulate) *dst += v;
  else *dst = v;
}

}  // namespace dsmoe
