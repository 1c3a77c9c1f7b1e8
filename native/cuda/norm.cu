// norm.cu — RMSNorm (with an optional bf16 copy for the tensor-core GEMMs), embedding lookup, f32 -> bf16 cast.
#include "common.cuh"

// ------------------------------------------------------------------------------------------------------------------
// RMSNorm: a block per row; the row is read twice (sum of squares, then scale) and the second read hits L1/L2.

__global__ void rms_norm_kernel(const float* __restrict__ x,  // (T, d)
                                const float* __restrict__ w,  // (d)
                                float* y,                     // (T, d), may alias x
                                uint16_t* __restrict__ y_bf16, int d, float eps) {
  pdl_entry();
  const float* xr = x + (size_t)blockIdx.x * d;
  float ss = 0.f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  __shared__ float part[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(part[0] / (float)d + eps);
  float* yr = y + (size_t)blockIdx.x * d;
  uint16_t* br = y_bf16 ? y_bf16 + (size_t)blockIdx.x * d : nullptr;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float v = xr[i] * inv * w[i];
    yr[i] = v;
    if (br) br[i] = f_to_bf16(v);
  }
}

__global__ void embed_kernel(const uint16_t* __restrict__ embed,  // (V, d)
                             const int* __restrict__ tokens,      // (T)
                             float* __restrict__ h, int d) {      // (T, d)
  pdl_entry();
  const uint16_t* er = embed + (size_t)tokens[blockIdx.x] * d;
  float* hr = h + (size_t)blockIdx.x * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) hr[i] = bf16_to_f(er[i]);
}

__global__ void cast_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, size_t n) {
  pdl_entry();
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = f_to_bf16(x[i]);
}

extern "C" {

int dsmoe_cuda_rms_norm(const float* x, const float* w, float* y, uint16_t* y_bf16, int T, int d, float eps,
                        void* stream) {
  DSMOE_RETURN_IF(T < 0 || d <= 0);
  if (T == 0) return 0;
  launch_k(rms_norm_kernel, T, 256, 0, as_stream(stream), x, w, y, y_bf16, d, eps);
  DSMOE_LAUNCH_STATUS();
}

int dsmoe_cuda_embed(const uint16_t* embed, const int* tokens, float* h, int T, int d, void* stream) {
  DSMOE_RETURN_IF(T < 0 || d <= 0);
  if (T == 0) return 0;
  launch_k(embed_kernel, T, 256, 0, as_stream(stream), embed, tokens, h, d);
  DSMOE_LAUNCH_STATUS();
}

int dsmoe_cuda_cast_bf16(const float* x, uint16_t* y, size_t n, void* stream) {
  if (n == 0) return 0;
  unsigned blocks = ceil_div(n, 256);
  if (blocks > 4096) blocks = 4096;
  launch_k(cast_bf16_kernel, blocks, 256, 0, as_stream(stream), x, y, n);
  DSMOE_LAUNCH_STATUS();
}

}  // extern "C"
