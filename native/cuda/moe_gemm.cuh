// moe_gemm.cuh — internal entry to the tensor-core GEMM of moe_gemm.cu, shared with linear.cu and moe.cu.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

enum { GEMM_GATE_UP = 0, GEMM_DOWN = 1, GEMM_LINEAR = 2 };

// GATE_UP / DOWN: rows r < offsets[K] grouped by expert; LINEAR: rows r < max_rows of one matrix (offsets unused).
// Kd (reduction length) must be a multiple of 32.
int launch_tc_gemm(int epi, const uint16_t* A, const uint16_t* W, const int* offsets, const int* row_token,
                   const float* row_weight, const float* bias, int K, int max_rows, int Kd, int N, int accumulate,
                   uint16_t* h_out, float* out, cudaStream_t s);
