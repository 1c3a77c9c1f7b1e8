// router.cu — fused router: logits = x · router^T, softmax over all E experts, top-k / threshold selection.
// A warp per token (E <= 256, so 8 probabilities per lane stay in registers); selection is k rounds of a warp arg-max.
#include "common.cuh"

#define ROUTER_MAX_E 256
#define ROUTER_PER_LANE (ROUTER_MAX_E / 32)
#define ROUTER_WARPS 4

// (p, e) beats (q, f) when p > q, or p == q and e < f: the tie rule of docs/design.md §1
__device__ __forceinline__ bool beats(float p, int e, float q, int f) { return p > q || (p == q && e < f); }

__global__ void router_select_kernel(const float* __restrict__ x,            // (T, d)
                                     const float* __restrict__ router,       // (E, d)
                                     const int* __restrict__ expert_slot,    // (E) or null
                                     int T, int d, int E, int mode, int k, float epsilon, int renormalize,
                                     float* __restrict__ probs,              // (T, E) or null
                                     int* __restrict__ sel_ids,              // (T, k)
                                     float* __restrict__ sel_w,              // (T, k)
                                     int* __restrict__ sel_count) {          // (T) or null
  __shared__ float logits[ROUTER_WARPS][ROUTER_MAX_E];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int t = blockIdx.x * ROUTER_WARPS + warp;
  if (t >= T) return;
  const float* xr = x + (size_t)t * d;

  // logits: the x row is re-read per expert from L1; the router (E*d*4 bytes) stays in L2 across tokens
  for (int e = 0; e < E; ++e) {
    const float4* wr = reinterpret_cast<const float4*>(router + (size_t)e * d);
    const float4* xv = reinterpret_cast<const float4*>(xr);
    float s = 0.f;
    for (int i = lane; i < d / 4; i += 32) {
      float4 a = xv[i], b = __ldg(wr + i);
      s = fmaf(a.x, b.x, s);
      s = fmaf(a.y, b.y, s);
      s = fmaf(a.z, b.z, s);
      s = fmaf(a.w, b.w, s);
    }
    s = warp_sum(s);
    if (lane == 0) logits[warp][e] = s;
  }
  __syncwarp();

  // softmax over all E (pruned experts included: the kept ones keep their original probabilities)
  float p[ROUTER_PER_LANE];
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < ROUTER_PER_LANE; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < E ? logits[warp][e] : -INFINITY;
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
    p[i] *= inv;
    if (e < E && probs) probs[(size_t)t * E + e] = p[i];
    if (e >= E || (expert_slot && expert_slot[e] < 0)) taken |= 1u << i;
  }

  // selection: round j takes the best remaining expert (descending p, ties to the lower index)
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
    if (lane == j) my_id = expert_slot ? expert_slot[be] : be, my_w = bp;
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

extern "C" int dsmoe_cuda_router_select(const float* x, const float* router, const int* expert_slot, int T, int d,
                                        int E, int mode, int k, float epsilon, int renormalize, float* probs,
                                        int* sel_ids, float* sel_w, int* sel_count, void* stream) {
  DSMOE_RETURN_IF(T < 0 || d <= 0 || d % 4 || E <= 0 || E > ROUTER_MAX_E || k <= 0 || k > 32);
  DSMOE_RETURN_IF(mode != DSMOE_SELECT_TOPK && mode != DSMOE_SELECT_THRESHOLD);
  if (T == 0) return 0;
  router_select_kernel<<<ceil_div(T, ROUTER_WARPS), 32 * ROUTER_WARPS, 0, as_stream(stream)>>>(
      x, router, expert_slot, T, d, E, mode, k, epsilon, renormalize, probs, sel_ids, sel_w, sel_count);
  DSMOE_LAUNCH_STATUS();
}
