// reference.h — plain CPU twins of every CUDA kernel (docs/design.md §1 math), used by the test harness.
// Double accumulation, no tricks: these are the definitions the kernels are measured against.
#pragma once
#include <stdint.h>

#include <vector>

namespace ref {

uint16_t f2bf(float f);  // round to nearest even
float bf2f(uint16_t b);

void rms_norm(const float* x, const float* w, float* y, int T, int d, float eps);              // x, y (T, d)
void linear(const float* x, const uint16_t* W, const float* bias, float* y, int T, int in, int out,
            bool accumulate);                                                                   // W (out, in)
void rope(float* x, int T, int n_heads, int hd, int row_stride, const int* positions, float theta);
void kv_append(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
               float* k_cache, float* v_cache, int max_ctx);
void attention(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
               const float* k_cache, const float* v_cache, int max_ctx, float* out);          // out (T, H*hd)
// probs (T, E) always written; ids / w (T, k) descending p with -1 / 0 pads; count (T)
void router_select(const float* x, const float* router, const int* expert_slot, int T, int d, int E, int mode, int k,
                   float epsilon, bool renormalize, float* probs, int* ids, float* w, int* count);
// h (T*k, I) f32; rows of pads are left untouched
void moe_gate_up(const float* x, const uint16_t* gate_up, const int* ids, int T, int k, int d, int I, float* h);
// out (T, d) += sum_j w * down_e h
void moe_down(const float* h, const uint16_t* down, const int* ids, const float* w, int T, int k, int d, int I,
              float* out);
// rows r of logits (R, V) with seeds[r] / counters[r] (host arrays), by dsmoe::sample_token_ref
void sample(const float* logits, int R, int V, float temperature, float top_p, const uint64_t* seeds,
            const int64_t* counters, int* out_tokens);
// would `token` be the draw if the running sums were off by up to tol * kept mass? (float vs double summation can
// move a draw that lands next to a boundary to the neighbouring token; anything farther is a real error)
bool sample_within(const float* logits_row, int V, float temperature, float top_p, uint64_t seed, int64_t counter,
                   int token, double tol);

}  // namespace ref
