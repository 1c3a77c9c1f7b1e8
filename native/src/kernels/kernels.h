// The CPU kernel set of the sparse runtime. Every fast kernel has a plain `_ref` twin beside it in its .cpp file
// (sample_token's is in sampling.h); native/test/kernel_tests.cpp compares every pair at every ISA the CPU has
// (scalar, avx2, avx512 through set_simd), 1 and 3 threads. The fast kernels reach their ISA-specific bodies through
// the kernel table (kernel_table.h). Matrices are row-major; weights W are [out, in] (y = x·Wᵀ) as in design.md §4.
//
// Tolerances (normalised MSE Σ(a−b)²/Σa² against the twin): 1e-7 for every f32 kernel, and also for bf16/f16
// weights, because the twin widens the same 16-bit weights: only f32 accumulation order differs. What narrowing
// the weights itself costs (round-to-nearest: bf16 keeps 8 significant bits, relative error ≤ 2⁻⁸, so a product's
// nMSE ≈ 2⁻¹⁶/3 ≈ 5e-6; f16 keeps 11, ≈ 2⁻²²/3 ≈ 8e-8) is checked in kernel_tests.cpp's narrowing test with
// bounds 1e-5 (bf16) and 2e-7 (f16). Quantized weights (Q8_0 / Q4_0 GGUF blocks, the affine Q3_A / Q2_A; dtype.h)
// dequantize to the same f32 values on every path, so their twins ("dequantize to f32, then linear_ref") are held to
// the same 1e-7; what quantizing costs is checked against the f32 product (kernel_tests.cpp, bounds 1e-4 for Q8_0,
// 3e-2 for Q4_0, 4e-2 for Q3_A, 0.15 for Q2_A, and each above the wider format's error). The int8 GEMV (batches
// ≤ 4 over quantized weights, activations quantized to Q8 blocks; Q8Act below) has its own twin, linear_q8_ref: the
// same exact integer block dots, so every path matches it to 1e-6 of Σ|w·x̂|, and linear_ref to within the
// activation rounding's bound Σ|w|·d/2 per output (nMSE ≈ 2e-5 on Gaussian activations, bound 1e-4).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../common/dtype.h"

namespace dsmoe {

class ThreadPool;

// ---------------------------------------------------------------------------------------------------------------
// linear.cpp: Y = X·Wᵀ with W in f32/bf16/f16 (widened in registers) or quantized (dequantized in registers; K a
// multiple of the block: 32 for Q8_0/Q4_0, 64 for Q3_A/Q2_A), f32 accumulation, and an epilogue.

struct Epilogue {
  const float* bias = nullptr;       // [N] added to every row
  const float* row_scale = nullptr;  // [M] multiplies row m after the bias (routing weight of a token)
  const int32_t* scatter = nullptr;  // [M] row m is written to Y row scatter[m] (combine), else to row m
  bool accumulate = false;           // Y += v instead of Y = v
};

// Activations quantized for the integer GEMV over quantized weights (llama.cpp's vec_dot_q4_0_q8_0 and kin): each
// row in Q8 blocks of 32 — an f32 scale d = max|x| / 127, int8 codes q = round(x / d), and the integer sum of the
// codes (the activations' side of Q4_0's −8 and of Q3_A / Q2_A's offset m: Σ (d_w·c + m)·d·q = d_w·d·Σ c·q + m·d·Σ q).
// Each code is off by at most half a step, |x − d·q| ≤ d / 2, so an output moves by at most Σ_j |w_j|·d_j / 2
// (d_j the scale of x_j's block): for Gaussian activations about 2⁻⁸·|w|·|x|-sized, nMSE ≈ 3e-5 (design.md §5).
struct Q8Act {
  const int8_t* q;     // [M, K]
  const float* d;      // [M, K / 32]
  const int32_t* sum;  // [M, K / 32]
  int K;               // a multiple of 32
  Q8Act row(int m) const { return {q + size_t(m) * K, d + size_t(m) * (K / 32), sum + size_t(m) * (K / 32), K}; }
};
// Owns the buffers of a quantized X [M, K] (K a multiple of 32); quantize reuses them.
struct Q8Rows {
  int8_t* q = nullptr;
  float* d = nullptr;
  int32_t* sum = nullptr;
  size_t capacity = 0;  // codes
  Q8Rows() = default;
  Q8Rows(const Q8Rows&) = delete;
  Q8Rows& operator=(const Q8Rows&) = delete;
  ~Q8Rows();
  Q8Act quantize(const float* X, int M, int K);
};
// One row of K activations (K a multiple of 32) to Q8 blocks; the only activation quantizer (every path uses it).
void quantize_act_row(const float* x, int K, int8_t* q, float* d, int32_t* sum);

// The GEMV path takes M ≤ kGemvMaxRows; over quantized weights it quantizes X and runs the int8 GEMV for
// M ≤ int8_gemv_rows() (default all of the GEMV path: design.md §5 has the measurements), and the f32 GEMV that
// dequantizes the weights in registers otherwise. Larger batches take the packed GEMM, which dequantizes weights to
// f32 panels and keeps X in f32. set_int8_gemv_rows(0) or DSMOE_INT8_GEMV_ROWS=0 turns the int8 path off (tests
// compare the two end to end; benchmarks measure both in one build).
constexpr int kGemvMaxRows = 4;
int int8_gemv_rows();
void set_int8_gemv_rows(int rows);  // clamped to [0, kGemvMaxRows]
// Up to gemv_chunk_rows() rows (default kGemvChunkMaxRows) linear() runs the GEMV over chunks of kGemvMaxRows
// rows, streaming the weights once per chunk, instead of the GEMM, whose per-call widening of every weight into
// packed panels costs more than a few extra passes at small M (design.md §5 "Small batches" has the measurements).
// The chunks keep f32 activations (the int8 GEMV stays what M ≤ int8_gemv_rows() takes). DSMOE_GEMV_CHUNK_ROWS
// (4: never; at most 64) or set_gemv_chunk_rows moves the switch, for benchmarks and tests.
constexpr int kGemvChunkMaxRows = 8;
int gemv_chunk_rows();
void set_gemv_chunk_rows(int rows);  // clamped to [kGemvMaxRows, 64]

// X [M, K], W [N, K], Y rows of stride ldy.
void linear_ref(const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy, const Epilogue& ep);
// Picks GEMV (M ≤ 4: weights streamed once, memory-bound; over quantized weights with X quantized to Q8 blocks and
// integer dot products), the GEMV over chunks of 4 rows (M ≤ gemv_chunk_rows()), or the packed GEMM (larger M:
// register-blocked micro-kernel, f32).
void linear(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
            const Epilogue& ep);
// Bytes of weights per work item of a GEMV (a chunk of linear_gemv's rows, a block of a ≤ 4-row expert's rows in
// moe_ffn): the unit the threads balance decode by.
constexpr size_t kGemvItemBytes = size_t(128) << 10;
// The two paths, callable directly so tests hit both at every M.
void linear_gemv(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep);
void linear_gemm(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep);
// The int8 GEMV over quantized weights (wt quantized) from pre-quantized activations (linear_gemv quantizes X and
// calls it; moe_ffn quantizes each layer's rows once for all its experts), and its twin: the same integer block
// dots, accumulated in double (the SIMD paths match it to 1e-6; against linear_ref it differs by the activation
// quantization above).
void linear_gemv_q8(ThreadPool* pool, const Q8Act& X, int M, const void* W, DType wt, int N, float* Y, int ldy,
                    const Epilogue& ep);
void linear_q8_ref(const Q8Act& X, int M, const void* W, DType wt, int N, float* Y, int ldy, const Epilogue& ep);

// ---------------------------------------------------------------------------------------------------------------
// gemm.cpp: generic f32 C[M,N] = op(A)·op(B), op = transpose when the flag is set (A is [K,M] when transA,
// B is [N,K] when transB), over `count` batch entries: C entry e (C + e·M·N) = op(A entry a_index[e]) ·
// op(B entry b_index[e]) (A + i·M·K, B + i·K·N; index e itself when the array is null). The tfjs training kernels'
// product; C is written in place (no entry of C aliases A or B).
struct GemmBatch {
  int count = 1;
  const int32_t* a_index = nullptr;
  const int32_t* b_index = nullptr;
};
void gemm_ref(const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB,
              const GemmBatch& batch = GemmBatch{});
void gemm(ThreadPool* pool, const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB,
          const GemmBatch& batch = GemmBatch{});

// ---------------------------------------------------------------------------------------------------------------
// embedding.cpp: out[t] = table[ids[t]] widened; table [V, d].
void embedding_ref(const void* table, DType t, int d, const int32_t* ids, int T, float* out);
void embedding(ThreadPool* pool, const void* table, DType t, int d, const int32_t* ids, int T, float* out);

// ---------------------------------------------------------------------------------------------------------------
// rmsnorm.cpp: out[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w; x, out [T, d] (may alias).
void rmsnorm_ref(const float* x, const float* w, int T, int d, float eps, float* out);
void rmsnorm(ThreadPool* pool, const float* x, const float* w, int T, int d, float eps, float* out);

// ---------------------------------------------------------------------------------------------------------------
// rope.cpp: rotate_half RoPE in place on x [T, heads·hd] at positions pos [T].
void rope_ref(float* x, int T, int heads, int hd, const int32_t* pos, float theta);
void rope(ThreadPool* pool, float* x, int T, int heads, int hd, const int32_t* pos, float theta);

// ---------------------------------------------------------------------------------------------------------------
// attention.cpp: grouped-query attention of T query tokens over a per-slot KV cache.
struct AttentionShape {
  int H, KV, hd;            // query heads, kv heads, head dim
  size_t slot_stride;       // floats between slots in kcache/vcache (= maxContext · KV · hd)
  // [T, H] or null: 0 skips (token, head), leaving its output untouched (MoA: heads of attention experts a token did
  // not select, design.md §12); null computes every head.
  const uint8_t* active = nullptr;
};
// q, out [T, H·hd]; kcache, vcache [slots, maxContext, KV·hd]; token t reads positions 0..pos[t] of slot[t].
void attention_ref(const float* q, const float* kcache, const float* vcache, const int32_t* slot, const int32_t* pos,
                   int T, const AttentionShape& s, float* out);
void attention(ThreadPool* pool, const float* q, const float* kcache, const float* vcache, const int32_t* slot,
               const int32_t* pos, int T, const AttentionShape& s, float* out);

// ---------------------------------------------------------------------------------------------------------------
// router.cpp: softmax over all E experts, then the selection rule of design.md §1.
enum class SelectMode : int { Dense = 0, TopK = 1, Threshold = 2 };
struct SelectRule {
  SelectMode mode = SelectMode::Dense;
  int k = 1;                        // topk
  float epsilon = 0;                // threshold: keep e iff E·p_e > ε
  int k_max = 0;                    // threshold: at most this many (0 = E)
  bool renormalize = false;         // weights divided by their sum (Mixtral-style imports)
  const uint8_t* allowed = nullptr; // [E] 0 = pruned (never selected); null = all allowed
};
void softmax_rows(float* x, int T, int E);  // in place, [T, E]
// One row's softmax over its first `kept` of `width` values, scaled: y[j] = exp(scale·x[j] − m) / Σ for j < kept (m
// the largest scaled value, the sum in double), 0 for kept ≤ j < width; y may be x. The router's rows (kept = width,
// scale 1), attention's prefill scores and the trainer's causal softmax all take it.
void softmax_row(const float* x, float* y, int kept, int width, float scale);
void softmax_rows_ref(float* x, int T, int E);
// p [T, E] → for each token up to `cap` selected experts, ordered by probability (ties: lower index first):
// ids/weights [T, cap], count [T]. Returns the total number of selections.
int select_experts(const float* p, int T, int E, const SelectRule& rule, int cap, int32_t* ids, float* weights,
                   int32_t* count);
int select_experts_ref(const float* p, int T, int E, const SelectRule& rule, int cap, int32_t* ids, float* weights,
                       int32_t* count);

// ---------------------------------------------------------------------------------------------------------------
// moe_align.cpp: token→expert grouping (ggml mul_mat_id / vLLM moe_align): counts per expert, prefix sums, and the
// permutation listing (token, weight) pairs expert by expert, tokens ascending within an expert.
void group_by_expert(const int32_t* ids, const float* weights, const int32_t* count, int T, int cap, int E,
                     int32_t* expert_count /*[E]*/, int32_t* offsets /*[E+1]*/, int32_t* rows /*[total]*/,
                     float* row_weight /*[total]*/);
void group_by_expert_ref(const int32_t* ids, const float* weights, const int32_t* count, int T, int cap, int E,
                         int32_t* expert_count, int32_t* offsets, int32_t* rows, float* row_weight);

// ---------------------------------------------------------------------------------------------------------------
// expert.cpp: the routed expert block. y[t] += Σ_sel w · down_e(silu(gate_e(x_t)) ⊙ up_e(x_t)).
struct ExpertWeights {
  const void* gate_up;  // [K, 2I, d]: rows 0..I−1 gate, I..2I−1 up
  const void* down;     // [K, d, I]
  DType dtype;
  int d, I;
  const int32_t* slot_of_expert;  // [E] packed index in gate_up/down, −1 when the expert was pruned
};
void swiglu_ref(const float* gu /*[n, 2I]*/, int n, int I, float* h /*[n, I]*/);
void swiglu(const float* gu, int n, int I, float* h);
// Grouping as produced by group_by_expert (over original expert ids, E of them).
// out [R, d] (weighted expert rows), rows [R] token of each row → y [T, d] += per-token sums.
void combine_ref(const float* out, const int32_t* rows, int R, int d, float* y);
void combine(ThreadPool* pool, const float* out, const int32_t* rows, int R, int d, float* y);
void moe_ffn_ref(const float* x /*[T, d]*/, int T, const ExpertWeights& w, int E, const int32_t* offsets,
                 const int32_t* rows, const float* row_weight, float* y /*[T, d]*/);
// The buffers of moe_ffn, kept by the caller from call to call (grown to the largest call, never shrunk): a decode
// step then allocates nothing and takes no page faults on fresh memory. Null: moe_ffn allocates its own.
struct MoeScratch {
  std::vector<float> xs, gu, h, out;  // [R, d] gathered rows, [R, 2I], [R, I], [R, d] weighted outputs
  Q8Rows q8;                          // the rows quantized for the int8 GEMV (quantized weights)
};
void moe_ffn(ThreadPool* pool, const float* x, int T, const ExpertWeights& w, int E, const int32_t* offsets,
             const int32_t* rows, const float* row_weight, float* y, MoeScratch* scratch = nullptr);

// ---------------------------------------------------------------------------------------------------------------
// measure.cpp: what the benchmark compares against.
double triad_gbs(ThreadPool* pool, size_t bytes_per_array);  // a = b + s·c, 3 arrays moved per pass
double fma_peak_gflops(ThreadPool* pool);                    // independent FMA chains on every thread

}  // namespace dsmoe
