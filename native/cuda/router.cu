// router.cu — router logits = x · router^T, softmax over all E experts, top-k / threshold selection.
//
// Selection is a warp per token (E <= 256, so each lane keeps 8 probabilities in registers) and k rounds of a warp
// arg-max. The logits come from one of two producers:
//   T <= ROUTER_SMALL_T (decode): one block per token, its 8 warps share the E dot products, and warp 0 selects from
//                                 shared memory: one launch, the router read by 8 warps at once
//   larger T (prefill):           a tiled f32 GEMM (64 tokens x 32 experts per block) writes the logits into probs,
//                                 then a warp per token selects in place. Tiling matters: a warp per token would read
//                                 the whole router (E * d * 4 bytes) once per token.
// The router stays f32 (design.md §4): bf16 logits would move near-tied experts across the top-k boundary.
#include "common.cuh"

#define ROUTER_MAX_E 256
#define ROUTER_PER_LANE (ROUTER_MAX_E / 32)
#define ROUTER_SMALL_T 16
#define ROUTER_SMALL_WARPS 8
#define RT_BT 64  // tokens per tile
#define RT_BE 32  // experts per tile
#define RT_BK 32

// (p, e) beats (q, f) when p > q, or p == q and e < f: the tie rule of docs/design.md §1
__device__ __forceinline__ bool beats(float p, int e, float q, int f) { return p > q || (p == q && e < f); }

// one warp: logits of token t (shared or global memory, E entries) -> probs row, selection row
__device__ void select_warp(const float* lg, int t, const int* __restrict__ expert_slot, int E, int mode, int k,
                            float epsilon, int renormalize, float* probs, int* __restrict__ sel_ids,
                            float* __restrict__ sel_w, int* __restrict__ sel_count) {
  const int lane = threadIdx.x & 31;
  // each lane reads and later writes only its own entries, so lg may be the probs row itself
  float p[ROUTER_PER_LANE];
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < ROUTER_PER_LANE; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < E ? lg[e] : -INFINITY;
    mx = fmaxf(mx, p[i]);
  }
  mx = warp_max(mx);
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < ROUTER_PER_LANE; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < E ? __expf(p[i] - mx) : 0.f;
    sum += p[i];
  }
  sum = warp_sum(sum);
  const float inv = 1.f / sum;
  unsigned taken = 0;  // bit i: expert lane + 32 i is selected, pruned, or past E
#pragma unroll
  for (int i = 0; i < ROUTER_PER_LANE; ++i) {
    const int e = lane + 32 * i;
    p[i] *= inv;  // over all E: pruned experts included, the kept ones keep their original probabilities
    if (e < E) probs[(size_t)t * E + e] = p[i];
    if (e >= E || (expert_slot && expert_slot[e] < 0)) taken |= 1u << i;
  }

  // round j takes the best remaining expert (descending p, ties to the lower index)
  int my_id = -1;  // lane j < k ends up holding selection j
  float my_w = 0.f, sel_sum = 0.f;
  int n = 0;
  for (int j = 0; j < k; ++j) {
    float bp = -1.f;
    int be = 0x7fffffff;
#pragma unroll
    for (int i = 0; i < ROUTER_PER_LANE; ++i)
      if (!(taken >> i & 1u) && beats(p[i], lane + 32 * i, bp, be)) bp = p[i], be = lane + 32 * i;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, bp, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (beats(op, oe, bp, be)) bp = op, be = oe;
    }
    if (be == 0x7fffffff) break;  // every kept expert already taken (k > kept count)
    // threshold: E * p > epsilon; the arg-max (round 0) is always kept, and candidates come in descending p
    if (mode == DSMOE_SELECT_THRESHOLD && j > 0 && !((float)E * bp > epsilon)) break;
    if ((be & 31) == lane) taken |= 1u << (be >> 5);
    if (lane == j) {
      my_id = expert_slot ? expert_slot[be] : be;
      my_w = bp;
    }
    sel_sum += bp;
    ++n;
  }
  if (renormalize && lane < n) my_w /= sel_sum;
  if (lane < k) {
    sel_ids[(size_t)t * k + lane] = lane < n ? my_id : -1;
    sel_w[(size_t)t * k + lane] = lane < n ? my_w : 0.f;
  }
  if (sel_count && lane == 0) sel_count[t] = n;
}

// ------------------------------------------------------------------------------------------------------------------
// decode: grid (T), block ROUTER_SMALL_WARPS warps

__global__ void __launch_bounds__(32 * ROUTER_SMALL_WARPS)
router_small_kernel(const float* __restrict__ x,       // (T, d)
                    const float* __restrict__ router,  // (E, d)
                    const int* __restrict__ expert_slot, int d, int E, int mode, int k, float epsilon,
                    int renormalize, float* __restrict__ probs, int* __restrict__ sel_ids, float* __restrict__ sel_w,
                    int* __restrict__ sel_count) {
  pdl_entry();
  __shared__ float logits[ROUTER_MAX_E];
  const int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float4* xv = reinterpret_cast<const float4*>(x + (size_t)t * d);
  for (int e = warp; e < E; e += ROUTER_SMALL_WARPS) {
    const float4* wr = reinterpret_cast<const float4*>(router + (size_t)e * d);
    float s = 0.f;
#pragma unroll 4
    for (int i = lane; i < d / 4; i += 32) {
      const float4 a = __ldg(xv + i), b = __ldg(wr + i);
      s = fmaf(a.x, b.x, s);
      s = fmaf(a.y, b.y, s);
      s = fmaf(a.z, b.z, s);
      s = fmaf(a.w, b.w, s);
    }
    s = warp_sum(s);
    if (lane == 0) logits[e] = s;
  }
  __syncthreads();
  if (warp == 0)
    select_warp(logits, t, expert_slot, E, mode, k, epsilon, renormalize, probs, sel_ids, sel_w, sel_count);
}

// ------------------------------------------------------------------------------------------------------------------
// prefill: logits (T, E) = x (T, d) · router (E, d)^T as a tiled f32 GEMM; grid (T / 64, E / 32), 8 warps.
// Thread (warp, lane) owns tokens warp*8 .. warp*8+7 of the tile and expert lane: the x tile is read as a broadcast,
// the router tile with a padded pitch so the 32 lanes hit 32 banks.

__global__ void __launch_bounds__(256)
router_logits_tiled_kernel(const float* __restrict__ x,       // (T, d)
                           const float* __restrict__ router,  // (E, d)
                           int T, int d, int E,
                           float* __restrict__ logits) {      // (T, E)
  pdl_entry();
  __shared__ float xs[RT_BT][RT_BK + 1];
  __shared__ float rs[RT_BE][RT_BK + 1];
  const int t0 = blockIdx.x * RT_BT, e0 = blockIdx.y * RT_BE;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float acc[8] = {};
  for (int k0 = 0; k0 < d; k0 += RT_BK) {
#pragma unroll
    for (int j = 0; j < RT_BT * RT_BK / 256; ++j) {
      const int idx = tid + j * 256, r = idx / RT_BK, c = idx % RT_BK;
      xs[r][c] = t0 + r < T ? x[(size_t)(t0 + r) * d + k0 + c] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < RT_BE * RT_BK / 256; ++j) {
      const int idx = tid + j * 256, r = idx / RT_BK, c = idx % RT_BK;
      rs[r][c] = e0 + r < E ? router[(size_t)(e0 + r) * d + k0 + c] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < RT_BK; ++kk) {
      const float r = rs[lane][kk];
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = fmaf(xs[warp * 8 + i][kk], r, acc[i]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int t = t0 + warp * 8 + i, e = e0 + lane;
    if (t < T && e < E) logits[(size_t)t * E + e] = acc[i];
  }
}

// a warp per token, selecting from the logits already in probs (overwritten with the probabilities)
__global__ void router_select_kernel(const int* __restrict__ expert_slot, int T, int E, int mode, int k,
                                     float epsilon, int renormalize, float* probs, int* __restrict__ sel_ids,
                                     float* __restrict__ sel_w, int* __restrict__ sel_count) {
  pdl_entry();
  const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (t >= T) return;
  select_warp(probs + (size_t)t * E, t, expert_slot, E, mode, k, epsilon, renormalize, probs, sel_ids, sel_w,
              sel_count);
}

// shared expert as a one-expert MoE (design.md §1: y += sigmoid(m · w_sg) · shared(m)): a warp per token writes
// slot 0 and the sigmoid gate, so the expert kernels serve it unchanged with k = 1, K = 1
__global__ void shared_gate_kernel(const float* __restrict__ x,       // (T, d)
                                   const float* __restrict__ w_gate,  // (d)
                                   int T, int d, int* __restrict__ sel_ids, float* __restrict__ sel_w) {
  pdl_entry();
  const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (t >= T) return;
  const float4* xv = reinterpret_cast<const float4*>(x + (size_t)t * d);
  const float4* wv = reinterpret_cast<const float4*>(w_gate);
  float s = 0.f;
  for (int i = lane; i < d / 4; i += 32) {
    const float4 a = xv[i], b = __ldg(wv + i);
    s += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
  }
  s = warp_sum(s);
  if (lane == 0) {
    sel_ids[t] = 0;
    sel_w[t] = 1.f / (1.f + expf(-s));
  }
}

extern "C" int dsmoe_cuda_shared_expert_gate(const float* x, const float* w_gate, int T, int d, int* sel_ids,
                                             float* sel_w, void* stream) {
  DSMOE_RETURN_IF(T < 0 || d <= 0 || d % 4);
  if (T == 0) return 0;
  launch_k(shared_gate_kernel, ceil_div(T, 4), 128, 0, as_stream(stream), x, w_gate, T, d, sel_ids, sel_w);
  DSMOE_LAUNCH_STATUS();
}

extern "C" int dsmoe_cuda_router_select(const float* x, const float* router, const int* expert_slot, int T, int d,
                                        int E, int mode, int k, float epsilon, int renormalize, float* probs,
                                        int* sel_ids, float* sel_w, int* sel_count, void* stream) {
  DSMOE_RETURN_IF(T < 0 || d <= 0 || d % 32 || E <= 0 || E > ROUTER_MAX_E || k <= 0 || k > 32 || !probs);
  DSMOE_RETURN_IF(mode != DSMOE_SELECT_TOPK && mode != DSMOE_SELECT_THRESHOLD);
  if (T == 0) return 0;
  cudaStream_t s = as_stream(stream);
  if (T <= ROUTER_SMALL_T) {
    launch_k(router_small_kernel, T, 32 * ROUTER_SMALL_WARPS, 0, s, x, router, expert_slot, d, E, mode, k, epsilon,
                                                               renormalize, probs, sel_ids, sel_w, sel_count);
    DSMOE_LAUNCH_STATUS();
  }
  launch_k(router_logits_tiled_kernel, dim3(ceil_div(T, RT_BT), ceil_div(E, RT_BE)), 256, 0, s, x, router, T, d, E,
           probs);
  launch_k(router_select_kernel, ceil_div(T, 4), 128, 0, s, expert_slot, T, E, mode, k, epsilon, renormalize, probs,
                                                      sel_ids, sel_w, sel_count);
  DSMOE_LAUNCH_STATUS();
}
