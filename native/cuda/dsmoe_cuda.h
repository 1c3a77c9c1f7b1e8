/*
 * dsmoe_cuda.h — C API of the dsmoe CUDA kernels (docs/cuda.md).
 *
 * Every function takes device pointers and a stream (a cudaStream_t passed as void*, NULL = default stream), enqueues
 * work and returns without synchronising (dsmoe_cuda_memcpy_dtoh excepted: it waits so the host can read), so a whole
 * decode step can be captured in a CUDA graph. Return value:
 * 0 on success, otherwise a cudaError_t code (dsmoe_cuda_error_string turns it into text); shape arguments that the
 * kernels cannot serve return cudaErrorInvalidValue (1) before anything is enqueued.
 *
 * Types: activations, norms, biases and routers are float32; matrices are bfloat16 bit patterns (uint16_t).
 * Layouts are those of docs/design.md §4, shapes written [rows, cols] row-major:
 *   x / m            [T, d]          activations, one row per token
 *   router           [E, d]          float32, all E experts (probabilities are over all of them)
 *   expert_slot      [E]             kept-order slot of expert e, or -1 when pruned (NULL: slot = e, K = E)
 *   gate_up          [K, 2*I, d]     rows 0..I-1 gate, I..2I-1 up
 *   down             [K, d, I]
 * Requirements: d % 32 == 0, I % 32 == 0, E <= 256, k <= 32 (k_max for threshold), head_dim in {32,64,128,256}.
 *
 * This header is plain C so the Node addon's C++ sources can include it without the CUDA headers.
 */
#ifndef DSMOE_CUDA_H
#define DSMOE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------------------- */
/* device, memory, streams (thin wrappers so the addon needs no CUDA headers and links only this library)           */

int dsmoe_cuda_device_count(void);  /* 0 when there is no driver, no device, or the driver is too old */
int dsmoe_cuda_device_name(int device, char* buf, int buf_len);
int dsmoe_cuda_set_device(int device);
const char* dsmoe_cuda_error_string(int status);
int dsmoe_cuda_malloc(void** ptr, size_t bytes);
int dsmoe_cuda_free(void* ptr);
int dsmoe_cuda_memcpy_htod(void* dst, const void* src, size_t bytes, void* stream);
int dsmoe_cuda_memcpy_dtoh(void* dst, const void* src, size_t bytes, void* stream);
int dsmoe_cuda_memcpy_dtod(void* dst, const void* src, size_t bytes, void* stream);
int dsmoe_cuda_memset(void* dst, int value, size_t bytes, void* stream);
int dsmoe_cuda_stream_create(void** stream);
int dsmoe_cuda_stream_destroy(void* stream);
int dsmoe_cuda_stream_synchronize(void* stream);
/* programmatic dependent launch between consecutive kernels (sm_90+ only; on by default, DSMOE_CUDA_PDL=0 turns it
 * off at start-up); exists for A/B timing, results are identical either way */
void dsmoe_cuda_set_pdl(int enable);

/* ---------------------------------------------------------------------------------------------------------------- */
/* elementwise and norms (norm.cu)                                                                                   */

/* y = x / sqrt(mean(x^2) + eps) * w.  x, y [T, d] f32 (may alias); y_bf16 [T, d] optional rounded copy for the GEMMs */
int dsmoe_cuda_rms_norm(const float* x, const float* w, float* y, uint16_t* y_bf16, int T, int d, float eps,
                        void* stream);
/* h[t, :] = widen(embed[tokens[t], :]);  embed [V, d] bf16, h [T, d] f32 */
int dsmoe_cuda_embed(const uint16_t* embed, const int* tokens, float* h, int T, int d, void* stream);
/* y = bf16(x), n elements */
int dsmoe_cuda_cast_bf16(const float* x, uint16_t* y, size_t n, void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* dense linear (linear.cu): y[T, out] (+)= x[T, in] · W[out, in]^T + bias                                          */

/* scratch bytes dsmoe_cuda_linear needs for this T (0 on the mat-vec path) */
size_t dsmoe_cuda_linear_workspace_size(int T, int in);
/* accumulate != 0 adds into y (the residual stream); bias may be NULL */
int dsmoe_cuda_linear(const float* x, const uint16_t* W, const float* bias, float* y, int T, int in, int out,
                      int accumulate, void* workspace, size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* rotary embedding, KV cache and attention (rope.cu, attention.cu)                                                 */

/* in place on x[t * row_stride + h * hd + i] for h < n_heads
 * (rotate_half form, angle = positions[t] * theta^(-2i/hd)) */
int dsmoe_cuda_rope(float* x, int T, int n_heads, int hd, int row_stride, const int* positions, float theta,
                    void* stream);
/* qkv [T, (H + 2KV) * hd] (q rows, then k, then v; k already rotated); caches [slots, max_ctx, KV, hd] f32 */
int dsmoe_cuda_kv_append(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
                         float* k_cache, float* v_cache, int max_ctx, void* stream);
/* both of the above in one launch (the per-layer decode form): rope on q and k heads of qkv in place, then k and v of
 * token t stored at position positions[t] of slot slots[t] */
int dsmoe_cuda_rope_kv_append(float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
                              float theta, float* k_cache, float* v_cache, int max_ctx, void* stream);
/* scratch bytes for dsmoe_cuda_attention (split-K partials for decode) */
size_t dsmoe_cuda_attention_workspace_size(int T, int H, int hd, int max_ctx);
/* out [T, H * hd]: token t attends to cache positions 0..positions[t] of slot slots[t];
 * q head h reads kv head h / (H / KV) */
int dsmoe_cuda_attention(const float* qkv, int T, int H, int KV, int hd, const int* slots, const int* positions,
                         const float* k_cache, const float* v_cache, int max_ctx, float* out, void* workspace,
                         size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* router and selection (router.cu)                                                                                 */

enum { DSMOE_SELECT_TOPK = 0, DSMOE_SELECT_THRESHOLD = 1 };

/*
 * p = softmax(x · router^T) over all E experts (a warp per token), then selection among the kept experts:
 *   topk       the k largest p (ties: lower expert index first)
 *   threshold  keep e iff E * p_e > epsilon, at most k (= k_max), the arg-max always
 * Outputs per token, in descending p: sel_ids [T, k] kept-order slots (-1 pads unused entries), sel_w [T, k] the dense
 * probability (divided by the sum of the selected ones when renormalize != 0; 0 on pads), sel_count [T] (optional),
 * probs [T, E] (required: it holds the logits between the two kernels of the prefill path, then the probabilities,
 * which routing statistics read).
 */
int dsmoe_cuda_router_select(const float* x, const float* router, const int* expert_slot, int T, int d, int E,
                             int mode, int k, float epsilon, int renormalize, float* probs, int* sel_ids,
                             float* sel_w, int* sel_count, void* stream);

/* Shared expert (plans with shared_expert_intermediate_size > 0): sel_ids [T] = 0 and sel_w [T] = sigmoid(x · w_gate),
 * w_gate [d] f32; the expert kernels below then run it as a one-expert MoE (k = 1, K = 1, its own gate_up / down). */
int dsmoe_cuda_shared_expert_gate(const float* x, const float* w_gate, int T, int d, int* sel_ids, float* sel_w,
                                  void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* token -> expert grouping on the device (grouping.cu)                                                             */

/*
 * From sel_ids [T, k] (-1 = unused) builds, without a host synchronisation:
 *   counts  [K]        rows per expert
 *   offsets [K + 1]    exclusive prefix sum of counts (offsets[K] = rows in use)
 *   row_token  [T * k] gather map: grouped row r reads token row_token[r] (rows of expert e are offsets[e]..)
 *   row_weight [T * k] routing weight of grouped row r
 *   assign_row [T * k] scatter map: selection (t, j) went to grouped row assign_row[t * k + j] (-1 for pads); optional
 * cursor [K] is scratch. Row order inside one expert is arbitrary (atomics); results do not depend on it.
 */
int dsmoe_cuda_group_tokens(const int* sel_ids, const float* sel_w, int T, int k, int K, int* counts, int* cursor,
                            int* offsets, int* row_token, float* row_weight, int* assign_row, void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* experts: small-batch mat-vec (moe_gemv.cu) and grouped tensor-core GEMM (moe_gemm.cu)                            */

/* h[t * k + j, :] = silu(gate_e · x[t]) * (up_e · x[t]) with e = sel_ids[t, j] read in the kernel;
 * pads (-1) are skipped */
int dsmoe_cuda_moe_gemv_gate_up(const float* x, const uint16_t* gate_up, const int* sel_ids, int T, int k, int d,
                                int I, float* h, void* stream);
/* out[t, :] += sum_j sel_w[t, j] * down_e · h[t * k + j, :]   (one writer per output: deterministic, no atomics) */
int dsmoe_cuda_moe_gemv_down(const float* h, const uint16_t* down, const int* sel_ids, const float* sel_w, int T,
                             int k, int d, int I, float* out, void* stream);
/* grouped rows r < offsets[K]: h[r, :] = silu(gate_e · x[row_token[r]]) * (up_e · x[row_token[r]]), bf16 out.
 * max_rows = T * k bounds offsets[K] so the grid is sized on the host without reading it back. */
int dsmoe_cuda_moe_gemm_gate_up(const uint16_t* x_bf16, const uint16_t* gate_up, const int* offsets,
                                const int* row_token, int max_rows, int K, int d, int I, uint16_t* h, void* stream);
/* out[row_token[r], :] += row_weight[r] * down_e · h[r, :]   (scatter-add with float atomics) */
int dsmoe_cuda_moe_gemm_down(const uint16_t* h, const uint16_t* down, const int* offsets, const int* row_token,
                             const float* row_weight, int max_rows, int K, int d, int I, float* out, void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* the whole MoE block (moe.cu): router -> select -> experts -> out += combine                                      */

typedef struct dsmoe_cuda_moe_weights {
  const float* router;      /* [E, d] f32 */
  const int* expert_slot;   /* [E] device, kept-order slot or -1; NULL when every expert is kept (K == E) */
  const uint16_t* gate_up;  /* [K, 2I, d] bf16 */
  const uint16_t* down;     /* [K, d, I] bf16 */
  int E, K, d, I;
  /* Optional slot tables, device arrays [K] of device pointers (NULL: packed at gate_up / down): expert p's
   * [2I, d] / [d, I] matrices at gate_up_table[p] / down_table[p]. The device expert cache
   * (dsmoe_cuda_expert_cache.h) fills them; only the selected experts' entries are read. */
  const uint16_t* const* gate_up_table;
  const uint16_t* const* down_table;
} dsmoe_cuda_moe_weights;

typedef struct dsmoe_cuda_moe_select {
  int mode;          /* DSMOE_SELECT_TOPK or DSMOE_SELECT_THRESHOLD; dense = topk with k = K */
  int k;             /* k, or k_max for threshold */
  float epsilon;
  int renormalize;
} dsmoe_cuda_moe_select;

enum { DSMOE_PATH_AUTO = 0, DSMOE_PATH_GEMV = 1, DSMOE_PATH_GEMM = 2 };

size_t dsmoe_cuda_moe_workspace_size(int T, const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s);
/*
 * out[T, d] += MoE(m[T, d]).  sel_ids / sel_w / probs are optional [T, k] / [T, k] / [T, E] outputs for routing
 * statistics (NULL keeps them in the workspace). path picks the expert kernels; AUTO uses the mat-vec kernels while
 * T * k <= 64 and the grouped GEMM above.
 */
int dsmoe_cuda_moe_forward(const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s, const float* m, int T,
                           float* out, int* sel_ids, float* sel_w, float* probs, int path, void* workspace,
                           size_t workspace_bytes, void* stream);

/* ---------------------------------------------------------------------------------------------------------------- */
/* sampling (sampling.cu)                                                                                           */

/*
 * One token per row of logits [R, V], by the sampler contract of docs/design.md §10 (the TypeScript reference is
 * src/sampling/sampler.ts; test/fixtures/sampler_vectors.json holds its answers). temperature <= 0: arg-max (ties:
 * lower id). Otherwise q = exp((l - max) / temperature), kept set = { q >= tau, q > 0 } for the largest tau whose
 * kept mass reaches top_p * sum q (top_p >= 1 keeps all; ties at tau all kept), and the sample is the first id, in
 * id order, whose running kept mass exceeds u * kept_mass, u = dsmoe_uniform(seeds[r], counters[r]) (common/rng.h).
 * seeds / counters are device arrays [R] (NULL = 0 for every row): row r's sequence seed as uint64 and the index of
 * this token among that sequence's generated tokens, so a row's token depends only on its own logits, seed and
 * counter. The kernel only reads them; the caller advances counters (a captured graph can do so on the device).
 * Computed in f32: tokens equal the f64 reference's except for draws within ~1e-5 (relative) of a boundary.
 */
int dsmoe_cuda_sample(const float* logits, int R, int V, float temperature, float top_p, const uint64_t* seeds,
                      const int64_t* counters, int* out_tokens, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* DSMOE_CUDA_H */
