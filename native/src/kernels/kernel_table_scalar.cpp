// The scalar kernel table (also what ARM builds run): the shared bodies over one-lane "vectors", and a plain
// 4 × 8 GEMM micro-kernel.
#include <algorithm>
#include <cmath>
#include <vector>

#include "isa.h"
#include "isa_int8.h"
#include "kernel_table.h"

namespace dsmoe {
namespace scalar_kernels {

#define DSMOE_TARGET
using Ops = ScalarOps;
using I8 = ScalarInt8;
#include "gemv_isa.inc"
#include "gemv_bf16_isa.inc"
#include "gemv_q8_isa.inc"
#include "rows_isa.inc"
#undef DSMOE_TARGET

constexpr int MR = 4, NR = 8;

template <DType WT>
static void pack(const void* W, int K, int k0, int kc, int N, int n0, float* panel) {
  pack_panel_plain(W, WT, K, k0, kc, N, n0, NR, panel);
}

static void microkernel(int kc, const float* Ap, const float* panel, float* C, bool accumulate) {
  float c[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i][j] = accumulate ? C[i * NR + j] : 0.f;
  for (int k = 0; k < kc; ++k)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) c[i][j] += Ap[size_t(k) * MR + i] * panel[size_t(k) * NR + j];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) C[i * NR + j] = c[i][j];
}

}  // namespace scalar_kernels

const KernelTable& scalar_kernel_table() {
  using namespace scalar_kernels;
  static const KernelTable table = DSMOE_KERNEL_TABLE(Simd::Scalar, false);
  return table;
}

}  // namespace dsmoe
