// bf16-compute GEMM for the tfjs training kernels (f32 master weights and results, bf16 products): the same
// contract as gemm() in kernels.h — C[M,N] = op(A)·op(B) over batch entries, f32 in and out — but each operand is
// rounded to bf16 (round to nearest even) when it is packed and the products are summed in f32 by AVX-512 BF16's
// dot-product instruction (vdpbf16ps). Only where the CPU has AVX-512 BF16 and the kernel table is AVX-512.
#pragma once
#include <cstdint>

#include "kernels.h"

namespace dsmoe {

// True where gemm_bf16 can run: the CPU has AVX-512 BF16 and simd_level() is AVX-512 (DSMOE_SIMD=avx2 or
// set_simd lower it, so the refusal is testable on any machine).
bool bf16_compute_available();

// The value an f32 becomes as a bf16 operand of gemm_bf16: round to nearest even, as vcvtneps2bf16, which also
// treats subnormal inputs as zero.
float round_to_bf16(float x);

// Reference twin: operands rounded by round_to_bf16, products summed in double.
void gemm_bf16_ref(const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB,
                   const GemmBatch& batch = GemmBatch{});
// The fast path; the caller checks bf16_compute_available() first (otherwise it aborts: never reached from
// JavaScript, where the binding refuses first).
void gemm_bf16(ThreadPool* pool, const float* A, const float* B, float* C, int M, int N, int K, bool transA,
               bool transB, const GemmBatch& batch = GemmBatch{});

}  // namespace dsmoe
