// grouping.cu — token -> expert grouping on the device (counts, prefix sums, gather/scatter maps).
// Three launches and a memset, no host read-back, so the MoE block can be captured in a CUDA graph; the same job as
// ggml's mul_mat_id row mapping or vLLM's moe_align_block_size.
#include "common.cuh"

#define GROUP_MAX_K 1024

// a kernel rather than cudaMemsetAsync, so the chain stays kernel-to-kernel (programmatic launch, common.cuh)
__global__ void group_zero_kernel(int* __restrict__ counts, int* __restrict__ cursor, int K) {
  pdl_entry();
  for (int e = threadIdx.x; e < K; e += blockDim.x) counts[e] = cursor[e] = 0;
}

// counts[e] = number of selections of expert e; a shared-memory histogram per block keeps global atomics to K per block
__global__ void group_count_kernel(const int* __restrict__ sel_ids, int n, int K, int* __restrict__ counts) {
  pdl_entry();
  __shared__ int hist[GROUP_MAX_K];
  for (int e = threadIdx.x; e < K; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int e = sel_ids[i];
    if (e >= 0) atomicAdd(&hist[e], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < K; e += blockDim.x)
    if (hist[e]) atomicAdd(&counts[e], hist[e]);
}

// offsets = exclusive scan of counts (one block; K <= 1024)
__global__ void group_scan_kernel(const int* __restrict__ counts, int K, int* __restrict__ offsets) {
  pdl_entry();
  __shared__ int s[GROUP_MAX_K];
  for (int e = threadIdx.x; e < K; e += blockDim.x) s[e] = counts[e];
  __syncthreads();
  if (threadIdx.x == 0) {  // K is at most a few hundred: a serial scan is shorter than the launch
    int acc = 0;
    for (int e = 0; e < K; ++e) {
      const int c = s[e];
      s[e] = acc;
      acc += c;
    }
    offsets[K] = acc;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < K; e += blockDim.x) offsets[e] = s[e];
}

// each selection claims a row in its expert's range
__global__ void group_scatter_kernel(const int* __restrict__ sel_ids, const float* __restrict__ sel_w, int n, int k,
                                     const int* __restrict__ offsets, int* __restrict__ cursor,
                                     int* __restrict__ row_token, float* __restrict__ row_weight,
                                     int* __restrict__ assign_row) {
  pdl_entry();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int e = sel_ids[i];
    int r = -1;
    if (e >= 0) {
      r = offsets[e] + atomicAdd(&cursor[e], 1);
      row_token[r] = i / k;
      row_weight[r] = sel_w[i];
    }
    if (assign_row) assign_row[i] = r;
  }
}

extern "C" int dsmoe_cuda_group_tokens(const int* sel_ids, const float* sel_w, int T, int k, int K, int* counts,
                                       int* cursor, int* offsets, int* row_token, float* row_weight, int* assign_row,
                                       void* stream) {
  DSMOE_RETURN_IF(T < 0 || k <= 0 || K <= 0 || K > GROUP_MAX_K);
  cudaStream_t s = as_stream(stream);
  launch_k(group_zero_kernel, 1, 256, 0, s, counts, cursor, K);
  const int n = T * k;
  unsigned blocks = n ? ceil_div(n, 256) : 1;
  if (blocks > 1024) blocks = 1024;
  if (n) launch_k(group_count_kernel, blocks, 256, 0, s, sel_ids, n, K, counts);
  launch_k(group_scan_kernel, 1, 256, 0, s, counts, K, offsets);
  if (n) launch_k(group_scatter_kernel, blocks, 256, 0, s, sel_ids, sel_w, n, k, offsets, cursor, row_token, row_weight,
                                                    assign_row);
  DSMOE_LAUNCH_STATUS();
}
