// moe_gemv.cu — small-batch expert mat-vec products (decode), expert ids read inside the kernel as ggml's mmvq.
// Memory bound: every selected expert's weights are streamed once per selection with 16-byte non-allocating loads,
// activations stay f32 (no bf16 rounding on this path), accumulation in f32.
#include "common.cuh"
#include "moe_gemm.cuh"

#define GEMV_WARPS 4
#define GU_OUT_PER_WARP 2  // h outputs per warp: 2 gate rows + 2 up rows in flight
#define DN_ROWS_PER_WARP 4
#define DN_SEL_BATCH 4     // selections whose weights are loaded together (more bytes in flight per lane)

// ------------------------------------------------------------------------------------------------------------------
// gate+up+SwiGLU: grid (I / (GEMV_WARPS * GU_OUT_PER_WARP), T * k); block = 4 warps

__global__ void __launch_bounds__(32 * GEMV_WARPS)
moe_gemv_gate_up_kernel(const float* __restrict__ x,         // (T, d)
                        const uint16_t* __restrict__ gate_up, // (K, 2I, d)
                        const uint16_t* const* __restrict__ table,  // (K) expert → [2I, d], or null: packed
                        const int* __restrict__ sel_ids,      // (T, k)
                        int k, int d, int I,
                        float* __restrict__ h) {              // (T * k, I)
  pdl_entry();
  const int a = blockIdx.y;  // selection (t, j) = (a / k, a % k)
  const int e = sel_ids[a];
  if (e < 0) return;  // threshold pad: nothing reads this h row
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int i0 = (blockIdx.x * GEMV_WARPS + warp) * GU_OUT_PER_WARP;
  if (i0 >= I) return;
  const float* xr = x + (size_t)(a / k) * d;
  const uint16_t* W = expert_matrix(gate_up, table, e, (size_t)2 * I * d);
  const uint4* rows[2 * GU_OUT_PER_WARP];
#pragma unroll
  for (int r = 0; r < GU_OUT_PER_WARP; ++r) {
    const int i = min(i0 + r, I - 1);  // clamped rows are computed and dropped: keeps the loop branch-free
    rows[2 * r] = reinterpret_cast<const uint4*>(W + (size_t)i * d);
    rows[2 * r + 1] = reinterpret_cast<const uint4*>(W + (size_t)(I + i) * d);
  }
  float acc[2 * GU_OUT_PER_WARP] = {};
  const float4* xv = reinterpret_cast<const float4*>(xr);
#pragma unroll 2
  for (int c = lane; c < d / 8; c += 32) {  // c indexes 8-element chunks
    uint4 w[2 * GU_OUT_PER_WARP];
#pragma unroll
    for (int r = 0; r < 2 * GU_OUT_PER_WARP; ++r) w[r] = ld_stream(rows[r] + c);
    const float4 xa = __ldg(xv + 2 * c), xb = __ldg(xv + 2 * c + 1);
#pragma unroll
    for (int r = 0; r < 2 * GU_OUT_PER_WARP; ++r) acc[r] += dot8(w[r], xa, xb);
  }
#pragma unroll
  for (int r = 0; r < 2 * GU_OUT_PER_WARP; ++r) acc[r] = warp_sum(acc[r]);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < GU_OUT_PER_WARP; ++r)
      if (i0 + r < I) h[(size_t)a * I + i0 + r] = silu(acc[2 * r]) * acc[2 * r + 1];
  }
}

// ------------------------------------------------------------------------------------------------------------------
// down + routing weight + combine: grid (d / (GEMV_WARPS * DN_ROWS_PER_WARP), T). The block sums over the token's
// selections itself, so each out element has exactly one writer.

__global__ void __launch_bounds__(32 * GEMV_WARPS)
moe_gemv_down_kernel(const float* __restrict__ h,          // (T * k, I)
                     const uint16_t* __restrict__ down,    // (K, d, I)
                     const uint16_t* const* __restrict__ table,  // (K) expert → [d, I], or null: packed
                     const int* __restrict__ sel_ids,      // (T, k)
                     const float* __restrict__ sel_w,      // (T, k)
                     int k, int d, int I,
                     float* __restrict__ out) {            // (T, d), accumulated
  pdl_entry();
  const int t = blockIdx.y;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * GEMV_WARPS + warp) * DN_ROWS_PER_WARP;
  if (n0 >= d) return;
  float acc[DN_ROWS_PER_WARP] = {};
  for (int c0 = 0; c0 < I; c0 += 256) {
    const int c = c0 + lane * 8;  // this lane's 8 columns of the row
    const bool active = c < I;
    for (int j0 = 0; j0 < k; j0 += DN_SEL_BATCH) {
      uint4 w[DN_SEL_BATCH][DN_ROWS_PER_WARP];
      float4 ha[DN_SEL_BATCH], hb[DN_SEL_BATCH];
      float wt[DN_SEL_BATCH];
#pragma unroll
      for (int jj = 0; jj < DN_SEL_BATCH; ++jj) {
        const int j = j0 + jj;
        const int e = j < k ? sel_ids[(size_t)t * k + j] : -1;
        wt[jj] = e >= 0 ? sel_w[(size_t)t * k + j] : 0.f;
        if (e >= 0 && active) {
          const uint16_t* W = expert_matrix(down, table, e, (size_t)d * I) + c;
#pragma unroll
          for (int r = 0; r < DN_ROWS_PER_WARP; ++r)
            w[jj][r] = ld_stream(reinterpret_cast<const uint4*>(W + (size_t)min(n0 + r, d - 1) * I));
          const float4* hv = reinterpret_cast<const float4*>(h + ((size_t)t * k + j) * I + c);
          ha[jj] = hv[0];
          hb[jj] = hv[1];
        } else {
#pragma unroll
          for (int r = 0; r < DN_ROWS_PER_WARP; ++r) w[jj][r] = make_uint4(0, 0, 0, 0);
          ha[jj] = hb[jj] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      }
#pragma unroll
      for (int jj = 0; jj < DN_SEL_BATCH; ++jj)
#pragma unroll
        for (int r = 0; r < DN_ROWS_PER_WARP; ++r) acc[r] = fmaf(wt[jj], dot8(w[jj][r], ha[jj], hb[jj]), acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < DN_ROWS_PER_WARP; ++r) acc[r] = warp_sum(acc[r]);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < DN_ROWS_PER_WARP; ++r)
      if (n0 + r < d) out[(size_t)t * d + n0 + r] += acc[r];
  }
}

int launch_moe_gemv_gate_up(const float* x, const uint16_t* gate_up, const uint16_t* const* table, const int* sel_ids,
                            int T, int k, int d, int I, float* h, cudaStream_t stream) {
  DSMOE_RETURN_IF(T < 0 || k <= 0 || d <= 0 || I <= 0 || d % 32 || I % 32 || (size_t)T * k > 65535);
  if (T == 0) return 0;
  dim3 grid(ceil_div(I, GEMV_WARPS * GU_OUT_PER_WARP), T * k);
  launch_k(moe_gemv_gate_up_kernel, grid, 32 * GEMV_WARPS, 0, stream, x, gate_up, table, sel_ids, k, d, I, h);
  DSMOE_LAUNCH_STATUS();
}

int launch_moe_gemv_down(const float* h, const uint16_t* down, const uint16_t* const* table, const int* sel_ids,
                         const float* sel_w, int T, int k, int d, int I, float* out, cudaStream_t stream) {
  DSMOE_RETURN_IF(T < 0 || k <= 0 || d <= 0 || I <= 0 || d % 32 || I % 32 || T > 65535);
  if (T == 0) return 0;
  dim3 grid(ceil_div(d, GEMV_WARPS * DN_ROWS_PER_WARP), T);
  launch_k(moe_gemv_down_kernel, grid, 32 * GEMV_WARPS, 0, stream, h, down, table, sel_ids, sel_w, k, d, I, out);
  DSMOE_LAUNCH_STATUS();
}

extern "C" {

int dsmoe_cuda_moe_gemv_gate_up(const float* x, const uint16_t* gate_up, const int* sel_ids, int T, int k, int d,
                                int I, float* h, void* stream) {
  return launch_moe_gemv_gate_up(x, gate_up, nullptr, sel_ids, T, k, d, I, h, as_stream(stream));
}

int dsmoe_cuda_moe_gemv_down(const float* h, const uint16_t* down, const int* sel_ids, const float* sel_w, int T,
                             int k, int d, int I, float* out, void* stream) {
  return launch_moe_gemv_down(h, down, nullptr, sel_ids, sel_w, T, k, d, I, out, as_stream(stream));
}

}  // extern "C"
