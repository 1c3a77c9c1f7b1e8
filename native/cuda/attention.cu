// attention.cu — causal attention over the device KV cache, one kernel for prefill and decode (llama.cpp's batch:
// token t of slot slots[t] at position positions[t] attends to cache positions 0..positions[t]).
//
// Block = (token, kv head, key chunk), 4 warps. The block serves all H/KV query heads that share the kv head, so each
// K/V row is read once per group. Each warp runs an online softmax over every 4th key of the chunk; warps are merged in
// shared memory. Decode (few tokens) splits the keys into chunks whose partial (max, sum, acc) go to the workspace and
// a second kernel merges them (flash-decoding); the chunk count comes from max_ctx, not the live length, so nothing is
// read back and blocks past positions[t] exit at once.
#include "common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_G 8       // H / KV
#define ATT_SPLIT_T 32    // from this many tokens up the grid is wide enough without splitting keys
#define ATT_CHUNK_MIN 64  // keys per split
#define ATT_MAX_SPLIT 256

static void attention_split(int T, int max_ctx, int* nsplit, int* chunk) {
  if (T >= ATT_SPLIT_T) {
    *nsplit = 1, *chunk = max_ctx;
    return;
  }
  int ns = (max_ctx + ATT_CHUNK_MIN - 1) / ATT_CHUNK_MIN;
  if (ns > ATT_MAX_SPLIT) ns = ATT_MAX_SPLIT;
  *nsplit = ns;
  *chunk = (max_ctx + ns - 1) / ns;
}

template <int NPL>  // head_dim / 32 elements per lane
__global__ void __launch_bounds__(32 * ATT_WARPS)
attention_kernel(const float* __restrict__ qkv,      // (T, (H + 2KV) * hd)
                 int H, int KV, const int* __restrict__ slots, const int* __restrict__ positions,
                 const float* __restrict__ k_cache,  // (slots, max_ctx, KV, hd)
                 const float* __restrict__ v_cache,  // (slots, max_ctx, KV, hd)
                 int max_ctx, int chunk, int nsplit,
                 float* __restrict__ out,            // (T, H * hd)              when nsplit == 1
                 float* __restrict__ part) {         // (T, H, nsplit, hd + 2)   when nsplit > 1
  pdl_entry();
  constexpr int hd = 32 * NPL;
  extern __shared__ float sh[];  // (ATT_WARPS, G, hd + 2)
  const int t = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
  const int G = H / KV;
  const int L = positions[t] + 1;
  const int k_beg = split * chunk, k_end = min(L, k_beg + chunk);
  if (k_beg >= k_end) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float scale = rsqrtf((float)hd);

  float q[ATT_MAX_G][NPL], acc[ATT_MAX_G][NPL], m[ATT_MAX_G], l[ATT_MAX_G];
  const float* qrow = qkv + (size_t)t * (H + 2 * KV) * hd;
#pragma unroll
  for (int h = 0; h < ATT_MAX_G; ++h) {
    m[h] = -INFINITY, l[h] = 0.f;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
      q[h][i] = h < G ? qrow[(size_t)(g * G + h) * hd + lane * NPL + i] * scale : 0.f;
      acc[h][i] = 0.f;
    }
  }
  const size_t row_stride = (size_t)KV * hd;
  const float* kb = k_cache + (size_t)slots[t] * max_ctx * row_stride + (size_t)g * hd + lane * NPL;
  const float* vb = v_cache + (size_t)slots[t] * max_ctx * row_stride + (size_t)g * hd + lane * NPL;
  for (int p = k_beg + warp; p < k_end; p += ATT_WARPS) {
    float kv[NPL], vv[NPL];
#pragma unroll
    for (int i = 0; i < NPL; ++i) kv[i] = kb[p * row_stride + i], vv[i] = vb[p * row_stride + i];
#pragma unroll
    for (int h = 0; h < ATT_MAX_G; ++h) {
      if (h < G) {
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < NPL; ++i) s = fmaf(q[h][i], kv[i], s);
        s = warp_sum(s);
        const float mn = fmaxf(m[h], s);
        const float c = __expf(m[h] - mn), ps = __expf(s - mn);  // first key: exp(-inf) = 0
        l[h] = l[h] * c + ps;
#pragma unroll
        for (int i = 0; i < NPL; ++i) acc[h][i] = fmaf(acc[h][i], c, ps * vv[i]);
        m[h] = mn;
      }
    }
  }

  // merge the warps: warp w's state for head h at sh[(w * G + h) * (hd + 2)]
#pragma unroll
  for (int h = 0; h < ATT_MAX_G; ++h) {  // constant indices keep acc[][] in registers
    if (h < G) {
      float* st = sh + (size_t)(warp * G + h) * (hd + 2);
#pragma unroll
      for (int i = 0; i < NPL; ++i) st[lane * NPL + i] = acc[h][i];
      if (lane == 0) st[hd] = m[h], st[hd + 1] = l[h];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * hd; idx += blockDim.x) {
    const int h = idx / hd, i = idx % hd;
    float M = -INFINITY;
    for (int w = 0; w < ATT_WARPS; ++w) M = fmaxf(M, sh[(w * G + h) * (hd + 2) + hd]);
    float S = 0.f, A = 0.f;
    for (int w = 0; w < ATT_WARPS; ++w) {
      const float* st = sh + (w * G + h) * (hd + 2);
      if (st[hd] == -INFINITY) continue;  // a warp that saw no key (chunk shorter than 4)
      const float c = __expf(st[hd] - M);
      S += st[hd + 1] * c;
      A += st[i] * c;
    }
    const int head = g * G + h;
    if (nsplit == 1) {
      out[(size_t)t * H * hd + (size_t)head * hd + i] = A / S;
    } else {
      float* pp = part + (((size_t)t * H + head) * nsplit + split) * (hd + 2);
      pp[i] = A;
      if (i == 0) pp[hd] = M, pp[hd + 1] = S;
    }
  }
}

// merge the live key chunks of (token, head): grid (T, H), block hd threads
__global__ void attention_merge_kernel(const float* __restrict__ part, const int* __restrict__ positions, int H, int hd,
                                       int chunk, int nsplit, float* __restrict__ out) {
  pdl_entry();
  const int t = blockIdx.x, head = blockIdx.y, i = threadIdx.x;
  const int live = (positions[t] + 1 + chunk - 1) / chunk;  // chunks with at least one key
  const float* pp = part + ((size_t)t * H + head) * nsplit * (hd + 2);
  float M = -INFINITY;
  for (int s = 0; s < live; ++s) M = fmaxf(M, pp[s * (hd + 2) + hd]);
  float S = 0.f, A = 0.f;
  for (int s = 0; s < live; ++s) {
    const float c = __expf(pp[s * (hd + 2) + hd] - M);
    S += pp[s * (hd + 2) + hd + 1] * c;
    A += pp[s * (hd + 2) + i] * c;
  }
  out[(size_t)t * H * hd + (size_t)head * hd + i] = A / S;
}

extern "C" {

size_t dsmoe_cuda_attention_workspace_size(int T, int H, int hd, int max_ctx) {
  int ns, chunk;
  attention_split(T, max_ctx, &ns, &chunk);
  return ns == 1 ? 0 : (size_t)T * H * ns * (hd + 2) * sizeof(float);
}

int dsmoe_cuda_attention(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
                         const float* k_cache, const float* v_cache, int max_ctx, float* out, void* workspace,
                         size_t workspace_bytes, void* stream) {
  DSMOE_RETURN_IF(T < 0 || H <= 0 || KV <= 0 || H % KV || H / KV > ATT_MAX_G || max_ctx <= 0 || T > 2147483647);
  DSMOE_RETURN_IF(hd != 32 && hd != 64 && hd != 128 && hd != 256);
  DSMOE_RETURN_IF(KV > 65535 || workspace_bytes < dsmoe_cuda_attention_workspace_size(T, H, hd, max_ctx));
  if (T == 0) return 0;
  int ns, chunk;
  attention_split(T, max_ctx, &ns, &chunk);
  cudaStream_t s = as_stream(stream);
  dim3 grid(T, KV, ns);
  const size_t smem = (size_t)ATT_WARPS * (H / KV) * (hd + 2) * sizeof(float);
  float* part = (float*)workspace;
  void (*kernel)(const float*, int, int, const int*, const int*, const float*, const float*, int, int, int, float*,
                 float*) = hd == 32 ? attention_kernel<1> : hd == 64 ? attention_kernel<2>
                                   : hd == 128 ? attention_kernel<4> : attention_kernel<8>;
  launch_k(kernel, grid, 32 * ATT_WARPS, smem, s, qkv, H, KV, slots, positions, k_cache, v_cache, max_ctx, chunk, ns,
           out, part);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || ns == 1) return (int)e;
  launch_k(attention_merge_kernel, dim3(T, H), hd, 0, s, part, positions, H, hd, chunk, ns, out);
  DSMOE_LAUNCH_STATUS();
}

}  // extern "C"
