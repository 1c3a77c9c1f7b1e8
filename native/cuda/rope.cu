// rope.cu — rotary embedding (transformers' rotate_half form, docs/design.md §1) and the KV-cache append.
#include "common.cuh"

// a thread per (token, head, i < hd/2): the pair (i, i + hd/2) is rotated by angle pos * theta^(-2i/hd)
__global__ void rope_kernel(float* x, int T, int n_heads, int hd, int row_stride, const int* __restrict__ positions,
                            float theta) {
  pdl_entry();
  const int half = hd / 2;
  const size_t n = (size_t)T * n_heads * half;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
    const int i = (int)(idx % half);
    const int h = (int)((idx / half) % n_heads);
    const int t = (int)(idx / ((size_t)half * n_heads));
    // exponent and angle in double: positions reach 1e5 and a float angle loses the low bits the CPU path keeps
    const double inv_freq = pow((double)theta, -2.0 * i / hd);
    double s, c;
    sincos((double)positions[t] * inv_freq, &s, &c);
    float* p = x + (size_t)t * row_stride + (size_t)h * hd;
    const float a = p[i], b = p[i + half];
    p[i] = (float)(a * c - b * s);
    p[i + half] = (float)(b * c + a * s);
  }
}

// a thread per (token, kv element): k and v of token t go to position positions[t] of cache slot slots[t]
__global__ void kv_append_kernel(const float* __restrict__ qkv,  // (T, (H + 2KV) * hd)
                                 int T, int H, int KV, int hd, const int* __restrict__ slots,
                                 const int* __restrict__ positions,
                                 float* __restrict__ k_cache,  // (slots, max_ctx, KV, hd)
                                 float* __restrict__ v_cache, int max_ctx) {
  pdl_entry();
  const int w = KV * hd;
  const size_t n = (size_t)T * w;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(idx / w), c = (int)(idx % w);
    const float* row = qkv + (size_t)t * (H + 2 * KV) * hd;
    const size_t dst = ((size_t)slots[t] * max_ctx + positions[t]) * w + c;
    k_cache[dst] = row[H * hd + c];
    v_cache[dst] = row[(H + KV) * hd + c];
  }
}

// fused decode form of rope + kv_append (one launch instead of two per layer): a thread per (token, head of q|k|v,
// i < hd/2); q and k pairs are rotated in place, and k, v pairs are also stored to the cache
__global__ void rope_kv_append_kernel(float* qkv,  // (T, (H + 2KV) * hd)
                                      int T, int H, int KV, int hd, const int* __restrict__ slots,
                                      const int* __restrict__ positions, float theta,
                                      float* __restrict__ k_cache,  // (slots, max_ctx, KV, hd)
                                      float* __restrict__ v_cache, int max_ctx) {
  pdl_entry();
  const int half = hd / 2, heads = H + 2 * KV;
  const size_t n = (size_t)T * heads * half;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
    const int i = (int)(idx % half);
    const int h = (int)((idx / half) % heads);
    const int t = (int)(idx / ((size_t)half * heads));
    float* p = qkv + (size_t)t * heads * hd + (size_t)h * hd;
    float a = p[i], b = p[i + half];
    if (h < H + KV) {  // q or k: rotate
      const double inv_freq = pow((double)theta, -2.0 * i / hd);
      double sn, cs;
      sincos((double)positions[t] * inv_freq, &sn, &cs);
      const float ra = (float)(a * cs - b * sn), rb = (float)(b * cs + a * sn);
      p[i] = a = ra;
      p[i + half] = b = rb;
    }
    if (h >= H) {  // k or v: append
      const bool is_k = h < H + KV;
      const int g = is_k ? h - H : h - H - KV;
      float* dst = (is_k ? k_cache : v_cache) + ((size_t)slots[t] * max_ctx + positions[t]) * KV * hd + (size_t)g * hd;
      dst[i] = a;
      dst[i + half] = b;
    }
  }
}

extern "C" {

int dsmoe_cuda_rope_kv_append(float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
                              float theta, float* k_cache, float* v_cache, int max_ctx, void* stream) {
  DSMOE_RETURN_IF(T < 0 || H <= 0 || KV <= 0 || hd <= 0 || (hd & 1) || max_ctx <= 0);
  if (T == 0) return 0;
  const size_t n = (size_t)T * (H + 2 * KV) * (hd / 2);
  unsigned blocks = ceil_div(n, 256);
  if (blocks > 8192) blocks = 8192;
  launch_k(rope_kv_append_kernel, blocks, 256, 0, as_stream(stream), qkv, T, H, KV, hd, slots, positions, theta,
           k_cache, v_cache, max_ctx);
  DSMOE_LAUNCH_STATUS();
}

int dsmoe_cuda_rope(float* x, int T, int n_heads, int hd, int row_stride, const int* positions, float theta,
                    void* stream) {
  DSMOE_RETURN_IF(T < 0 || n_heads <= 0 || hd <= 0 || (hd & 1) || row_stride < n_heads * hd);
  if (T == 0) return 0;
  const size_t n = (size_t)T * n_heads * (hd / 2);
  unsigned blocks = ceil_div(n, 256);
  if (blocks > 8192) blocks = 8192;
  launch_k(rope_kernel, blocks, 256, 0, as_stream(stream), x, T, n_heads, hd, row_stride, positions, theta);
  DSMOE_LAUNCH_STATUS();
}

int dsmoe_cuda_kv_append(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
                         float* k_cache, float* v_cache, int max_ctx, void* stream) {
  DSMOE_RETURN_IF(T < 0 || H <= 0 || KV <= 0 || hd <= 0 || max_ctx <= 0);
  if (T == 0) return 0;
  const size_t n = (size_t)T * KV * hd;
  unsigned blocks = ceil_div(n, 256);
  if (blocks > 8192) blocks = 8192;
  launch_k(kv_append_kernel, blocks, 256, 0, as_stream(stream), qkv, T, H, KV, hd, slots, positions, k_cache, v_cache,
                                                          max_ctx);
  DSMOE_LAUNCH_STATUS();
}

}  // extern "C"
