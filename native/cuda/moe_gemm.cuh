// moe_gemm.cuh — internal entries shared between kernel files: the tensor-core GEMM of moe_gemm.cu (linear.cu,
// moe.cu), the expert kernels with a slot table and the expert half of the MoE block (moe.cu, expert_cache.cu).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "dsmoe_cuda.h"

// DSMOE_PATH_AUTO picks the mat-vec expert kernels while T · k is at most this, the grouped GEMM above
#define MOE_GEMV_MAX_SEL 64

enum { GEMM_GATE_UP = 0, GEMM_DOWN = 1, GEMM_LINEAR = 2 };

// GATE_UP / DOWN: rows r < offsets[K] grouped by expert; LINEAR: rows r < max_rows of one matrix (offsets unused).
// Kd (reduction length) must be a multiple of 32.
int launch_tc_gemm(int epi, const uint16_t* A, const uint16_t* W, const int* offsets, const int* row_token,
                   const float* row_weight, const float* bias, int K, int max_rows, int Kd, int N, int accumulate,
                   uint16_t* h_out, float* out, cudaStream_t s, const uint16_t* const* W_table = nullptr);

// The expert kernels with an optional slot table (device array [K] of device pointers: expert e's matrix at
// table[e] instead of base + e · matrix size; the device expert cache's slots). A null table is the public form.
int launch_moe_gemv_gate_up(const float* x, const uint16_t* gate_up, const uint16_t* const* table, const int* sel_ids,
                            int T, int k, int d, int I, float* h, cudaStream_t stream);
int launch_moe_gemv_down(const float* h, const uint16_t* down, const uint16_t* const* table, const int* sel_ids,
                         const float* sel_w, int T, int k, int d, int I, float* out, cudaStream_t stream);
int launch_moe_gemm_gate_up(const uint16_t* x_bf16, const uint16_t* gate_up, const uint16_t* const* table,
                            const int* offsets, const int* row_token, int max_rows, int K, int d, int I, uint16_t* h,
                            cudaStream_t stream);
int launch_moe_gemm_down(const uint16_t* h, const uint16_t* down, const uint16_t* const* table, const int* offsets,
                         const int* row_token, const float* row_weight, int max_rows, int K, int d, int I, float* out,
                         cudaStream_t stream);

// moe.cu: the expert half of the MoE block (after router/select) for T tokens whose selections are ids / wts
// [T, k]; the workspace is carved for T_ws >= T tokens (the cached forward runs token ranges of one call's
// workspace). path is GEMV or GEMM (not AUTO). Uses w's slot tables when set.
int moe_run_experts(const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s, int T_ws, const float* m, int T,
                    const int* ids, const float* wts, float* out, int path, void* workspace, cudaStream_t stream);
// the MoE workspace's sel_ids / sel_w / probs for T_ws tokens (the cached forward's router outputs)
void moe_router_buffers(const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s, int T_ws, void* workspace,
                        int** sel_ids, float** sel_w, float** probs);
