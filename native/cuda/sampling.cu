// sampling.cu — next-token choice on the device: the sampler contract of docs/design.md §10 (greedy, temperature,
// top-p, u(seed, counter) from common/rng.h), the same tokens as the TypeScript reference and the CPU kernel.
// A block of 1024 threads per row; each thread owns a contiguous slice of the vocabulary so the final walk can go in
// id order after one block scan. The top-p cut is found by bisection on the float bit pattern of the threshold
// (monotone for positive floats), which lands exactly on the contract's τ — the largest weight whose "q ≥ τ" mass
// reaches top_p·Σq, ties at τ all kept — in 32 rounds without a sort. Row r draws with (seeds[r], counters[r]): the
// index of the token within that row's sequence, so a row's token never depends on its place in the batch.
#include "common.cuh"
#include "../src/common/rng.h"

#define SAMPLE_THREADS 1024

// block-wide reductions through shared memory (s has 32 slots, one per warp of the 1024-thread block)
__device__ float block_sum(float v, float* s) {
  v = warp_sum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
  __syncthreads();
  return warp_sum(s[threadIdx.x & 31]);  // every warp reduces the 32 partials, so every thread holds the total
}
__device__ float block_max(float v, float* s) {
  v = warp_max(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
  __syncthreads();
  return warp_max(s[threadIdx.x & 31]);
}

// the contract's weight q = exp((l - max) / T): a division, not a multiply by 1/T, so it is the reference's formula
// (and a tiny T cannot turn (l - max) = 0 into 0 * inf)
__device__ __forceinline__ float sample_weight(float l, float mx, float temperature) {
  return expf((l - mx) / temperature);
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float* __restrict__ logits,  // (R, V)
              int V, float temperature, float top_p,
              const uint64_t* __restrict__ seeds,     // (R) or NULL = 0
              const int64_t* __restrict__ counters,   // (R) or NULL = 0
              int* __restrict__ out_tokens) {         // (R)
  pdl_entry();
  __shared__ float red[32];
  __shared__ int s_pick;
  const int r = blockIdx.x, tid = threadIdx.x;
  const float* lr = logits + (size_t)r * V;
  const int per = (V + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
  const int beg = min(V, tid * per), end = min(V, beg + per);

  if (!(temperature > 0.f)) {  // arg-max, ties to the lower id
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = beg; i < end; ++i)
      if (lr[i] > best || bi == 0x7fffffff) best = lr[i], bi = i;  // first occurrence within the slice
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
    }
    __shared__ float wb[32];
    __shared__ int wi[32];
    if ((tid & 31) == 0) wb[tid >> 5] = best, wi[tid >> 5] = bi;
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < 32; ++w)
        if (wb[w] > wb[0] || (wb[w] == wb[0] && wi[w] < wi[0])) wb[0] = wb[w], wi[0] = wi[w];
      out_tokens[r] = wi[0];
    }
    return;
  }

  // q_i = exp((l_i - max) / temperature) in [0, 1]; Z = sum q
  float mx = -INFINITY;
  for (int i = beg; i < end; ++i) mx = fmaxf(mx, lr[i]);
  mx = block_max(mx, red);
  float z = 0.f;
  for (int i = beg; i < end; ++i) z += sample_weight(lr[i], mx, temperature);
  z = block_sum(z, red);

  // tau = the largest float with mass(q >= tau) >= top_p * Z (0 keeps everything)
  float tau = 0.f;
  if (top_p < 1.f) {
    const float target = top_p * z;
    uint32_t lo = 0, hi = __float_as_uint(1.0f) + 1;  // mass(lo) >= target > mass(hi)
    while (hi - lo > 1) {
      const uint32_t mid = lo + (hi - lo) / 2;
      const float th = __uint_as_float(mid);
      float m = 0.f;
      for (int i = beg; i < end; ++i) {
        const float q = sample_weight(lr[i], mx, temperature);
        if (q >= th) m += q;
      }
      m = block_sum(m, red);
      if (m >= target) lo = mid;
      else hi = mid;
    }
    tau = __uint_as_float(lo);
  }

  // kept = { q >= tau, q > 0 }: kept mass per slice, exclusive scan over the block, then the slice holding u * kept
  // walks in id order
  float mine = 0.f;
  int last_kept = -1;
  for (int i = beg; i < end; ++i) {
    const float q = sample_weight(lr[i], mx, temperature);
    if (q >= tau && q > 0.f) mine += q, last_kept = i;
  }
  float incl = mine;  // inclusive warp scan
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float v = __shfl_up_sync(0xffffffffu, incl, o);
    if ((tid & 31) >= o) incl += v;
  }
  __shared__ float wsum[32];
  __shared__ int wlast[32];
  int lk = last_kept;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) lk = max(lk, __shfl_xor_sync(0xffffffffu, lk, o));
  if ((tid & 31) == 31) wsum[tid >> 5] = incl;
  if ((tid & 31) == 0) wlast[tid >> 5] = lk;
  if (tid == 0) s_pick = 0x7fffffff;
  __syncthreads();
  float before = 0.f, total = 0.f;
  int last = -1;
  for (int w = 0; w < 32; ++w) {
    if (w < (tid >> 5)) before += wsum[w];
    total += wsum[w];
    last = max(last, wlast[w]);
  }
  before += incl - mine;
  const uint64_t seed = seeds ? seeds[r] : 0;
  const uint64_t counter = counters ? (uint64_t)counters[r] : 0;
  const float u = dsmoe_uniform(seed, counter) * total;
  if (mine > 0.f && u >= before && u < before + mine) {
    float run = before;
    int pick = last_kept;  // the running sum in this slice ended a rounding short of u: its last kept id
    for (int i = beg; i < end; ++i) {
      const float q = sample_weight(lr[i], mx, temperature);
      if (q >= tau && q > 0.f) {
        run += q;
        if (run > u) {
          pick = i;
          break;
        }
      }
    }
    atomicMin(&s_pick, pick);
  }
  __syncthreads();
  if (tid == 0) out_tokens[r] = s_pick != 0x7fffffff ? s_pick : last;  // no slice holds u (rounding): last kept id
}

extern "C" int dsmoe_cuda_sample(const float* logits, int R, int V, float temperature, float top_p,
                                 const uint64_t* seeds, const int64_t* counters, int* out_tokens, void* stream) {
  DSMOE_RETURN_IF(R < 0 || V <= 0);
  if (R == 0) return 0;
  launch_k(sample_kernel, R, SAMPLE_THREADS, 0, as_stream(stream), logits, V, temperature, top_p, seeds, counters,
           out_tokens);
  DSMOE_LAUNCH_STATUS();
}
