// linear.cu — dense projections y (+)= x · W^T + b (attention qkv / o, lm_head).
// T <= 8: a mat-vec that streams W once for all T tokens (decode is memory bound); larger T: x is rounded to bf16 in
// the workspace and the tensor-core GEMM of moe_gemm.cu runs with the LINEAR epilogue.
#include "common.cuh"
#include "moe_gemm.cuh"

#define LIN_MAX_T 8
#define LIN_WARPS 4
#define LIN_ROWS_PER_WARP 2

__global__ void __launch_bounds__(32 * LIN_WARPS)
linear_gemv_kernel(const float* __restrict__ x,      // (T, in)
                   const uint16_t* __restrict__ W,   // (out, in)
                   const float* __restrict__ bias,   // (out) or null
                   float* __restrict__ y,            // (T, out)
                   int T, int in, int out, int accumulate) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * LIN_WARPS + warp) * LIN_ROWS_PER_WARP;
  const uint4* rows[LIN_ROWS_PER_WARP];
#pragma unroll
  for (int r = 0; r < LIN_ROWS_PER_WARP; ++r)
    rows[r] = reinterpret_cast<const uint4*>(W + (size_t)min(n0 + r, out - 1) * in);
  // the weights do not depend on the previous kernel: start pulling them into L2 while it finishes
  if (n0 < out)
    for (int c = lane; c < in / 8; c += 32)
#pragma unroll
      for (int r = 0; r < LIN_ROWS_PER_WARP; ++r) asm volatile("prefetch.global.L2 [%0];" ::"l"(rows[r] + c));
  pdl_entry();
  if (n0 >= out) return;
  float acc[LIN_MAX_T][LIN_ROWS_PER_WARP] = {};
#pragma unroll 2
  for (int c = lane; c < in / 8; c += 32) {
    uint4 w[LIN_ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < LIN_ROWS_PER_WARP; ++r) w[r] = ld_stream(rows[r] + c);
#pragma unroll
    for (int t = 0; t < LIN_MAX_T; ++t) {
      if (t < T) {
        const float4* xv = reinterpret_cast<const float4*>(x + (size_t)t * in);
        const float4 xa = __ldg(xv + 2 * c), xb = __ldg(xv + 2 * c + 1);
#pragma unroll
        for (int r = 0; r < LIN_ROWS_PER_WARP; ++r) acc[t][r] += dot8(w[r], xa, xb);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < LIN_MAX_T; ++t) {
    if (t >= T) break;
#pragma unroll
    for (int r = 0; r < LIN_ROWS_PER_WARP; ++r) {
      const float s = warp_sum(acc[t][r]);
      const int n = n0 + r;
      if (lane == 0 && n < out) {
        const float v = s + (bias ? bias[n] : 0.f);
        float* dst = y + (size_t)t * out + n;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
}

extern "C" {

size_t dsmoe_cuda_linear_workspace_size(int T, int in) {
  return T <= LIN_MAX_T ? 0 : (size_t)T * in * sizeof(uint16_t);
}

int dsmoe_cuda_linear(const float* x, const uint16_t* W, const float* bias, float* y, int T, int in, int out,
                      int accumulate, void* workspace, size_t workspace_bytes, void* stream) {
  DSMOE_RETURN_IF(T < 0 || in <= 0 || out <= 0 || in % 32);
  DSMOE_RETURN_IF(workspace_bytes < dsmoe_cuda_linear_workspace_size(T, in));
  if (T == 0) return 0;
  cudaStream_t s = as_stream(stream);
  if (T <= LIN_MAX_T) {
    launch_k(linear_gemv_kernel, ceil_div(out, LIN_WARPS * LIN_ROWS_PER_WARP), 32 * LIN_WARPS, 0, s, x, W, bias, y,
             T, in, out, accumulate);
    DSMOE_LAUNCH_STATUS();
  }
  uint16_t* xb = (uint16_t*)workspace;  // (T, in)
  int st = dsmoe_cuda_cast_bf16(x, xb, (size_t)T * in, stream);
  if (st) return st;
  return launch_tc_gemm(GEMM_LINEAR, xb, W, nullptr, nullptr, nullptr, bias, 1, T, in, out, accumulate, nullptr, y,
                        s);
}

}  // extern "C"
