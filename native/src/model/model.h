// The sparse model: weights mapped from the plan's weights.safetensors, the forward pass of design.md §1 over a
// batch of tokens from any number of sequences (slots) at any positions, and per-layer routing statistics.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/dtype.h"
#include "../common/threadpool.h"
#include "../kernels/kernels.h"
#include "expert_cache.h"
#include "mapped_file.h"
#include "op_timer.h"

namespace dsmoe {

struct TensorRef {
  std::string name;            // for error messages
  uint64_t offset = 0;         // absolute byte offset in the weights file
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // as the header says; checked against the config
  const void* data = nullptr;  // set by Model once checked
};

struct LayerSpec {
  TensorRef attn_norm, qkv, qkv_bias, o, mlp_norm, router, gate_up, down;
  SelectRule select;              // the plan's select op (allowed is filled by the model from `kept`)
  std::vector<int32_t> kept;      // original expert ids in packed order
  int intermediate = 0;           // I
  int shared_intermediate = 0;    // Is, 0 = no shared expert
  TensorRef shared_gate_up, shared_down, shared_gate;
  int pool = -1;                  // the layer whose expert tensors these are (Megrez2 sharing; plan.json's experts.pool)
  bool pre_gate = false;          // router reads the previous layer's mlp_norm output: routed one block early
  // Attention experts (MoA, design.md §12); attn_experts = 0: plain attention. With A > 0, qkv is
  // [(K·N_h + 2·KV)·hd, d] (the kept experts' q rows, then k, then v), qkv_bias likewise, o [K, d, N_h·hd].
  int attn_experts = 0;           // A
  int heads_per_expert = 0;       // N_h (A·N_h = H)
  TensorRef attn_router;          // [A, d] F32
  SelectRule attn_select;         // the plan's attention_select (mode Dense: every kept expert, "all")
  std::vector<int32_t> attn_kept; // original attention expert ids in packed order
};

// The expert cache (expert_cache.h): slots = 0 keeps every expert resident in the mapping (the default).
struct ExpertCacheSpec {
  int slots = 0;                   // experts per layer held in memory (clamped to the layer's kept experts)
  int io_threads = 2;              // pread threads
  bool prefetch = true;            // layer l+1's router on layer l's hidden state queues its likely experts
  int prefetch_margin = 1;         // experts predicted per token beyond the layer's k
  bool reload_every_step = false;  // empty the cache after every forward (the "no cache" baseline)
  bool direct_io = false;          // read with O_DIRECT: every miss is a device read (the benchmark's slow tier)
};

// The routing of a pre-gated layer, known one block before the layer runs (design.md §5): for each token of the
// batch, the experts (original ids, selection order) and their weights.
struct EarlyRouting {
  int layer = -1;
  std::vector<int32_t> count;  // [T] experts per token
  std::vector<int32_t> ids;    // [T, E], the first count[t] of row t used
  std::vector<float> weights;  // [T, E]
  std::vector<int32_t> experts;  // distinct expert ids the layer needs for this batch, increasing (what to load)
};

// Called by forward() as soon as a pre-gated layer's routing is known (while the previous layer's experts are still
// to run), on the forward's thread: the place for an expert cache to start loading `routing.experts`.
using EarlyRoutingHook = std::function<void(const EarlyRouting& routing)>;

struct ModelSpec {
  std::string weights_path;
  int vocab = 0, d = 0, layers = 0, heads = 0, kv_heads = 0, experts = 0;
  float rms_eps = 1e-6f, rope_theta = 10000.f;
  DType dtype = DType::F32;         // of the embedding, LM head and shared expert (f32, bf16 or f16)
  DType expert_dtype = DType::F32;  // of the routed experts' gate_up/down (any DType: quantized blocks too)
  DType attn_dtype = DType::F32;    // of the attention projections qkv/o
  TensorRef embed, norm, lm_head; // lm_head may be the embed tensor (tied)
  std::vector<LayerSpec> layer;
  int threads = 0;                // 0 = hardware threads
  ExpertCacheSpec expert_cache;
  bool profile_ops = false;       // time every phase of the forward (op_timer.h); read with Model::op_times
  Residency residency = Residency::Mmap;  // how the weights file is held in memory (mapped_file.h)
};

// Per-call routing override (design.md §5): dense = every kept expert with its full probability.
struct RoutingOverride {
  bool active = false;
  SelectMode mode = SelectMode::Dense;
  int k = 0;
  float epsilon = 0;
};

class KvCache;

// The selection a layer runs: its plan's select op, or the per-call override (`allowed` left for the caller).
SelectRule layer_rule(const LayerSpec& layer, const RoutingOverride& routing);

// Checks a batch before any kernel runs (the addon re-checks what TypeScript validated): ids inside the vocabulary,
// slots and positions inside the cache, each slot's tokens continuing its sequence without gaps (`lengths` [slots]
// is what each slot holds), output rows inside the batch. Returns slot → its length after the batch. Both the CPU
// and the CUDA model call it. Throws std::runtime_error naming the offending value.
std::map<int, int> check_batch(int vocab, int cache_slots, int max_context, const std::vector<int>& lengths,
                               const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                               const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows);

class Model {
 public:
  explicit Model(ModelSpec spec);  // maps and checks every tensor; throws std::runtime_error

  const ModelSpec& spec() const { return spec_; }
  int head_dim() const { return spec_.d / spec_.heads; }
  int threads() const { return pool_.size(); }

  // tokens/slots/positions [T]; returns logits [R, V] for the rows in output_rows. Throws on any bad input.
  std::vector<float> forward(KvCache& cache, const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                             const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows,
                             const RoutingOverride& routing);

  // Routing statistics since the last reset: selections per layer per expert, tokens seen.
  void stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const;
  // Selections per layer per attention expert since the last reset (MoA models; empty rows in plain layers).
  std::vector<std::vector<int64_t>> attention_stats() const;
  void reset_stats();
  // Expert cache counters; false (and nothing written) when the experts are resident.
  bool cache_stats(ExpertCacheStats* out) const;
  // Wall time per phase summed over every forward since the model was made; false (nothing written) unless the
  // spec asked for it (profile_ops).
  bool op_times(OpTimes* out) const;
  // The residency in effect and why it fell short of the one asked for (empty when it did not: mapped_file.h).
  Residency residency() const { return file_->residency(); }
  const std::string& residency_warning() const { return file_->warning(); }

  // The early routings of the last forward (one per pre-gated layer, in layer order), and the hook called when each
  // becomes known. Both empty for models without pre_gate.
  std::vector<EarlyRouting> last_early_routing() const;
  void set_early_routing_hook(EarlyRoutingHook hook);

 private:
  // The routed experts of layer l over the grouped rows, read through the expert cache (several passes when the
  // batch needs more distinct experts than the layer has slots), and the prefetch of layer l+1's predicted experts.
  void moe_cached(int l, const float* a, int T, const int32_t* offsets, const int32_t* rows, const float* row_w,
                  const float* h_for_prediction, float* y);
  void prefetch_next(int l, const float* h, int T);

  // Layer l's MoA attention block (moa_attention.cpp): h += Σ_{a selected} pa_a · o_a·Wo_aᵀ, k/v into the cache.
  void moa_attention(int l, const float* a, int T, const int32_t* slots, const int32_t* positions, KvCache& cache,
                     const RoutingOverride& routing, float* h);
  void check_moa_layer(int l);

  // Checks t's shape (logical: weights, not bytes), dtype and byte range in the file, and points t.data at it.
  void check_tensor(TensorRef& t, const std::vector<int64_t>& want, DType expect);

  ModelSpec spec_;
  std::unique_ptr<MappedFile> file_;
  std::unique_ptr<ExpertCache> cache_;  // null: experts resident in the mapping
  ThreadPool pool_;
  std::vector<std::vector<uint8_t>> allowed_;  // [L][E] 1 when the expert is kept
  std::vector<std::vector<int32_t>> slot_of_;  // [L][E] packed index or −1
  mutable std::mutex mutex_;                   // one forward at a time per model (the pool is not re-entrant)
  std::vector<std::vector<int64_t>> counts_;   // [L][E]
  std::vector<std::vector<uint8_t>> attn_allowed_;     // [L][A] 1 when the attention expert is kept (MoA)
  std::vector<std::vector<int32_t>> attn_slot_;        // [L][A] packed index or −1
  std::vector<std::vector<int64_t>> attn_counts_;      // [L][A]
  int64_t tokens_ = 0;
  OpTimes op_times_;                           // summed over forwards when spec_.profile_ops
  // The forward's activations and scratch, kept from call to call and grown to the largest batch seen (under
  // mutex_, like every forward): a decode step allocates nothing and takes no page faults on fresh memory.
  struct ForwardBuffers {
    std::vector<float> h, a, qkv, q, kv, att, probs, sel_w, row_w, next_w, shared_gu, shared_h, shared_gate, hr;
    std::vector<int32_t> sel_ids, sel_count, expert_count, offsets, rows, next_ids, next_count;
    MoeScratch moe;
  };
  ForwardBuffers buffers_;
  std::vector<EarlyRouting> early_;            // of the last forward
  EarlyRoutingHook early_hook_;
};

// KV cache of one context: `slots` sequences × `max_context` positions, per layer, f32.
class KvCache {
 public:
  KvCache(const Model& model, int slots, int max_context);
  int slots() const { return slots_; }
  int max_context() const { return max_context_; }
  size_t row() const { return row_; }
  float* k(int layer) { return k_.data() + size_t(layer) * slots_ * max_context_ * row_; }
  float* v(int layer) { return v_.data() + size_t(layer) * slots_ * max_context_ * row_; }
  int length(int slot) const { return length_[slot]; }
  const std::vector<int>& lengths() const { return length_; }
  void set_length(int slot, int n) { length_[slot] = n; }
  void clear(int slot) { length_[slot] = 0; }

 private:
  int slots_, max_context_;
  size_t row_;  // KV·hd floats per position
  std::vector<float> k_, v_;  // [L, slots, max_context, KV·hd]
  std::vector<int> length_;   // filled positions per slot
};

}  // namespace dsmoe
