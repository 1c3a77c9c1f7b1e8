// common.cuh — helpers shared by the kernel files: status checks, bf16 widening, warp reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <utility>

#include "dsmoe_cuda.h"

#define DSMOE_RETURN_IF(cond) \
  do {                        \
    if (cond) return (int)cudaErrorInvalidValue; \
  } while (0)

// every launch is followed by this: a bad configuration is reported to the caller, never swallowed
#define DSMOE_LAUNCH_STATUS() return (int)cudaGetLastError()

static inline cudaStream_t as_stream(void* s) { return (cudaStream_t)s; }
static inline unsigned ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// bf16 bit pattern -> float is a 16-bit shift; doing it by hand keeps the loads as plain uint4
__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ float bf16_to_f(uint16_t v) { return __uint_as_float(((uint32_t)v) << 16); }
__device__ __forceinline__ uint16_t f_to_bf16(float f) {
  __nv_bfloat16 b = __float2bfloat16_rn(f);  // round to nearest even, as the CPU reference
  return *reinterpret_cast<uint16_t*>(&b);
}

// 8 bf16 (one 16-byte load) dotted with 8 floats
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b) {
  float s = bf16_lo(w.x) * a.x;
  s = fmaf(bf16_hi(w.x), a.y, s);
  s = fmaf(bf16_lo(w.y), a.z, s);
  s = fmaf(bf16_hi(w.y), a.w, s);
  s = fmaf(bf16_lo(w.z), b.x, s);
  s = fmaf(bf16_hi(w.z), b.y, s);
  s = fmaf(bf16_lo(w.w), b.z, s);
  s = fmaf(bf16_hi(w.w), b.w, s);
  return s;
}

// weights are streamed once per token: bypass L1 and keep them from evicting activations
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// expert e's matrix: through the slot table when there is one (the device expert cache), else packed at base
__device__ __forceinline__ const uint16_t* expert_matrix(const uint16_t* base, const uint16_t* const* table, int e,
                                                         size_t elements) {
  return table ? table[e] : base + (size_t)e * elements;
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + __expf(-g)); }

// ------------------------------------------------------------------------------------------------------------------
// Programmatic dependent launch (sm_90+). Every kernel is launched with programmatic stream serialisation, so the next
// kernel's blocks are scheduled while the previous one drains instead of after it: at batch 1 the ~10 kernels per layer
// are a few microseconds each and the gaps would otherwise cost as much as the weight streaming. Correctness rests on
// every kernel calling pdl_entry() before it touches anything a previous kernel wrote (and before any early exit, so
// "kernel done" keeps implying "its predecessor done"). Reading constant weights before it is allowed (linear.cu).

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_entry() {
  pdl_wait();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// runtime.cu: true when the current device is sm_90+ and DSMOE_CUDA_PDL is not "0" / dsmoe_cuda_set_pdl(0) not called
bool dsmoe_pdl_enabled();

template <typename... KArgs, typename... Args>
static inline int launch_k(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                           Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = dsmoe_pdl_enabled() ? 1 : 0;
  return (int)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}
