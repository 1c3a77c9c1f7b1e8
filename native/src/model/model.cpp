#include "model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>

#include "../common/cpu.h"

namespace dsmoe {

// Grows v to at least n elements (never shrinks it: the forward's buffers keep the largest batch's size).
template <class T>
static T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

void Model::check_tensor(TensorRef& t, const std::vector<int64_t>& want, DType expect) {
  if (t.shape != want)
    throw std::runtime_error("tensor " + t.name + " has shape " + shape_str(t.shape) + ", expected " + shape_str(want));
  if (t.dtype != expect)
    throw std::runtime_error("tensor " + t.name + " has dtype " + dtype_name(t.dtype) + ", expected " + dtype_name(expect));
  uint64_t elems = 1;
  for (int64_t v : t.shape) {
    if (v <= 0) throw std::runtime_error("tensor " + t.name + " has a non-positive dimension");
    // Checked before multiplying: no shape can wrap around 2^64 and pass the size test below.
    if (uint64_t(v) > file_->size() || elems > file_->size() / uint64_t(v))
      throw std::runtime_error("tensor " + t.name + " of shape " + shape_str(t.shape) + " is larger than " +
                               file_->path() + " (" + std::to_string(file_->size()) + " bytes: truncated or inconsistent weights file)");
    elems *= uint64_t(v);
  }
  // Quantized rows are whole blocks (a block never straddles two rows), so the tensor is elems / block_values blocks.
  if (is_quantized(t.dtype) && t.shape.back() % block_values(t.dtype) != 0)
    throw std::runtime_error("tensor " + t.name + " of shape " + shape_str(t.shape) + ": " + dtype_name(t.dtype) +
                             " rows must be whole blocks of " + std::to_string(block_values(t.dtype)) + " weights");
  uint64_t bytes = bytes_of(t.dtype, elems);
  if (t.offset > file_->size() || bytes > file_->size() - t.offset)
    throw std::runtime_error("tensor " + t.name + " needs bytes [" + std::to_string(t.offset) + ", " +
                             std::to_string(t.offset + bytes) + ") but " + file_->path() + " has only " +
                             std::to_string(file_->size()) + " bytes (truncated or inconsistent weights file)");
  if (t.offset % dtype_size(t.dtype) != 0)
    throw std::runtime_error("tensor " + t.name + " starts at a misaligned offset " + std::to_string(t.offset));
  t.data = file_->data() + t.offset;
}

Model::Model(ModelSpec spec) : spec_(std::move(spec)), pool_(spec_.threads > 0 ? spec_.threads : int(hardware_threads())) {
  const ModelSpec& s = spec_;
  if (s.vocab <= 0 || s.d <= 0 || s.layers <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.experts <= 0)
    throw std::runtime_error("model dimensions must be positive");
  if (s.d % s.heads != 0 || (s.d / s.heads) % 2 != 0 || s.heads % s.kv_heads != 0)
    throw std::runtime_error("inconsistent attention shape: hidden " + std::to_string(s.d) + ", heads " +
                             std::to_string(s.heads) + ", kv heads " + std::to_string(s.kv_heads));
  if (int(s.layer.size()) != s.layers)
    throw std::runtime_error("spec lists " + std::to_string(s.layer.size()) + " layers, config says " +
                             std::to_string(s.layers));
  const bool caching = s.expert_cache.slots > 0;
  if (caching && s.residency != Residency::Mmap)
    throw std::runtime_error(std::string("the expert cache reads experts from the mapped file: residency must be mmap, not ") +
                             residency_name(s.residency));
  file_ = std::make_unique<MappedFile>(s.weights_path, /*read_ahead=*/!caching, s.residency);
  const int64_t d = s.d, hd = s.d / s.heads, E = s.experts;
  const int64_t qkv = (s.heads + 2 * s.kv_heads) * hd;
  if (is_quantized(s.dtype)) throw std::runtime_error(std::string("the embedding and LM head are f32, bf16 or f16, not ") + dtype_name(s.dtype));
  const DType F32 = DType::F32;
  check_tensor(spec_.embed, {s.vocab, d}, s.dtype);
  check_tensor(spec_.norm, {d}, F32);
  check_tensor(spec_.lm_head, {s.vocab, d}, s.dtype);
  allowed_.assign(s.layers, std::vector<uint8_t>(E, 0));
  slot_of_.assign(s.layers, std::vector<int32_t>(E, -1));
  for (int l = 0; l < s.layers; ++l) {
    LayerSpec& L = spec_.layer[l];
    const int64_t I = L.intermediate, K = int64_t(L.kept.size());
    if (I <= 0) throw std::runtime_error("layer " + std::to_string(l) + ": intermediate size must be positive");
    if (K <= 0) throw std::runtime_error("layer " + std::to_string(l) + ": no experts kept");
    for (int32_t i = 0; i < int32_t(K); ++i) {
      int32_t e = L.kept[i];
      if (e < 0 || e >= E || allowed_[l][e])
        throw std::runtime_error("layer " + std::to_string(l) + ": kept expert list has a bad or repeated id " +
                                 std::to_string(e));
      allowed_[l][e] = 1;
      slot_of_[l][e] = i;
    }
    check_tensor(L.attn_norm, {d}, F32);
    if (L.attn_experts > 0) {
      check_moa_layer(l);
    } else {
      check_tensor(L.qkv, {qkv, d}, s.attn_dtype);
      check_tensor(L.qkv_bias, {qkv}, F32);
      check_tensor(L.o, {d, s.heads * hd}, s.attn_dtype);
    }
    check_tensor(L.mlp_norm, {d}, F32);
    check_tensor(L.router, {E, d}, F32);
    check_tensor(L.gate_up, {K, 2 * I, d}, s.expert_dtype);
    check_tensor(L.down, {K, d, I}, s.expert_dtype);
    if (L.shared_intermediate > 0) {
      check_tensor(L.shared_gate_up, {2 * int64_t(L.shared_intermediate), d}, s.dtype);
      check_tensor(L.shared_down, {d, int64_t(L.shared_intermediate)}, s.dtype);
      check_tensor(L.shared_gate, {d}, F32);
    }
    if (L.select.mode == SelectMode::TopK && L.select.k <= 0)
      throw std::runtime_error("layer " + std::to_string(l) + ": top-k needs k ≥ 1");
    if (L.pre_gate && l == 0) throw std::runtime_error("layer 0 cannot be pre-gated: it has no previous layer");
    if (L.pool < 0) L.pool = l;
    if (L.pool > l) throw std::runtime_error("layer " + std::to_string(l) + ": expert pool " + std::to_string(L.pool) + " must be an earlier layer or itself");
    if (L.pool != l) {
      // A shared pool: the same tensors (and kept list) as the pool's first layer, mapped once.
      const LayerSpec& P = spec_.layer[L.pool];
      if (P.pool != L.pool || P.kept != L.kept || P.gate_up.offset != L.gate_up.offset || P.down.offset != L.down.offset)
        throw std::runtime_error("layer " + std::to_string(l) + ": uses expert pool " + std::to_string(L.pool) +
                                 " but names other expert tensors or another kept list than that layer");
    }
  }
  counts_.assign(s.layers, std::vector<int64_t>(E, 0));
  attn_counts_.resize(s.layers);
  for (int l = 0; l < s.layers; ++l) attn_counts_[l].assign(spec_.layer[l].attn_experts, 0);
  if (caching) {
    const ExpertCacheSpec& c = s.expert_cache;
    if (c.prefetch_margin < 0 || c.prefetch_margin > E) throw std::runtime_error("prefetch margin must be in [0, experts]");
    std::vector<CachedLayer> where;
    for (int l = 0; l < s.layers; ++l) {
      // The cache is indexed by expert pool (the pool's first layer): the layers sharing a pool (Megrez2) share its
      // slots, and the other layers' entries hold nothing.
      const LayerSpec& L = spec_.layer[l];
      const uint64_t I = uint64_t(L.intermediate), dd = uint64_t(d);
      where.push_back({L.gate_up.offset, bytes_of(s.expert_dtype, 2 * I * dd), L.down.offset,
                       bytes_of(s.expert_dtype, dd * I), L.pool == l ? int(L.kept.size()) : 0});
    }
    cache_ = std::make_unique<ExpertCache>(s.weights_path, std::move(where), c.slots, c.io_threads, c.direct_io);
    // Everything but the routed experts stays resident: ask for it now, as the whole-file read-ahead would have.
    auto advise = [&](const TensorRef& t) {
      uint64_t n = 1;
      for (int64_t v : t.shape) n *= uint64_t(v);
      file_->will_need(t.offset, bytes_of(t.dtype, n));
    };
    advise(spec_.embed), advise(spec_.norm), advise(spec_.lm_head);
    for (const LayerSpec& L : spec_.layer) {
      for (const TensorRef* t : {&L.attn_norm, &L.qkv, &L.qkv_bias, &L.o, &L.mlp_norm, &L.router}) advise(*t);
      if (L.attn_experts > 0) advise(L.attn_router);
      if (L.shared_intermediate > 0)
        for (const TensorRef* t : {&L.shared_gate_up, &L.shared_down, &L.shared_gate}) advise(*t);
    }
  }
}

bool Model::cache_stats(ExpertCacheStats* out) const {
  if (!cache_) return false;
  *out = cache_->stats();
  return true;
}

void Model::prefetch_next(int l, const float* h, int T) {
  const ModelSpec& s = spec_;
  const LayerSpec& N = s.layer[l + 1];
  const int d = s.d, E = s.experts;
  if (N.pre_gate && !early_.empty() && early_.back().layer == l + 1) {
    // Pre-gated (Megrez2): layer l+1's routing is already known exactly, so load exactly its experts.
    std::vector<int> packed;
    for (int32_t e : early_.back().experts) packed.push_back(slot_of_[l + 1][e]);
    cache_->prefetch(N.pool, packed);
    return;
  }
  std::vector<float> a(size_t(T) * d), p(size_t(T) * E);
  rmsnorm(&pool_, h, static_cast<const float*>(N.mlp_norm.data), T, d, s.rms_eps, a.data());
  linear(&pool_, a.data(), T, d, N.router.data, DType::F32, E, p.data(), E, Epilogue{});
  softmax_rows(p.data(), T, E);
  SelectRule guess;
  guess.mode = SelectMode::TopK;
  guess.k = std::min(int(N.kept.size()), std::max(1, N.select.k) + s.expert_cache.prefetch_margin);
  guess.allowed = allowed_[l + 1].data();
  std::vector<int32_t> ids(size_t(T) * guess.k), count(T);
  std::vector<float> w(size_t(T) * guess.k);
  select_experts(p.data(), T, E, guess, guess.k, ids.data(), w.data(), count.data());
  // Most-probable first across the batch: token by token, rank by rank, so a small cache gets the best guesses.
  std::vector<uint8_t> seen(E, 0);
  std::vector<int> packed;
  for (int r = 0; r < guess.k; ++r)
    for (int t = 0; t < T; ++t)
      if (r < count[t] && !seen[ids[size_t(t) * guess.k + r]]) {
        int e = ids[size_t(t) * guess.k + r];
        seen[e] = 1;
        packed.push_back(slot_of_[l + 1][e]);
      }
  cache_->prefetch(N.pool, packed);
}

void Model::moe_cached(int l, const float* a, int T, const int32_t* offsets, const int32_t* rows, const float* row_w,
                       const float* h_for_prediction, float* y) {
  const ModelSpec& s = spec_;
  const LayerSpec& L = s.layer[l];
  const int c = L.pool;  // the cache holds a shared pool once, under its first layer
  const int E = s.experts, S = cache_->slots(c);
  std::vector<int> active;  // original ids with rows, ascending: the order the resident path adds them in
  for (int e = 0; e < E; ++e)
    if (offsets[e + 1] > offsets[e] && slot_of_[l][e] >= 0) active.push_back(e);
  const bool predict = s.expert_cache.prefetch && l + 1 < s.layers;
  // The next layer uses this layer's shared pool (Megrez2): predict after this layer's last pass, so that a second
  // pass's request is not taken for the next layer's (the cache scores a prediction on the pool's next request).
  const bool same_pool = predict && s.layer[l + 1].pool == c;
  if (active.empty()) {
    if (predict) prefetch_next(l, h_for_prediction, T);
    return;
  }
  std::vector<int32_t> cache_slot(E, -1), sub_offsets(E + 1), sub_rows;
  std::vector<float> sub_w;
  // More distinct experts than slots (a long prefill on a small cache): several passes over ascending groups of
  // experts. Each token still receives its experts' outputs in ascending expert order, as in one pass.
  for (size_t start = 0; start < active.size(); start += size_t(S)) {
    const size_t end = std::min(active.size(), start + size_t(S));
    std::vector<int> packed;
    for (size_t i = start; i < end; ++i) packed.push_back(slot_of_[l][active[i]]);
    cache_->request(c, packed);
    if (predict && !same_pool && start == 0) prefetch_next(l, h_for_prediction, T);  // queued behind this layer's demand reads
    std::vector<int> got;
    try {
      got = cache_->wait(c, packed);
    } catch (...) {
      cache_->release(c);
      throw;
    }
    std::fill(cache_slot.begin(), cache_slot.end(), -1);
    for (size_t i = start; i < end; ++i) cache_slot[active[i]] = got[i - start];
    ExpertWeights ew{cache_->gate_up_pool(c), cache_->down_pool(c), s.expert_dtype, s.d, L.intermediate, cache_slot.data()};
    if (start == 0 && end == active.size()) {
      moe_ffn(&pool_, a, T, ew, E, offsets, rows, row_w, y, &buffers_.moe);
    } else {
      sub_rows.clear();
      sub_w.clear();
      sub_offsets[0] = 0;
      for (int e = 0; e < E; ++e) {
        if (cache_slot[e] >= 0)
          for (int r = offsets[e]; r < offsets[e + 1]; ++r) sub_rows.push_back(rows[r]), sub_w.push_back(row_w[r]);
        sub_offsets[e + 1] = int32_t(sub_rows.size());
      }
      moe_ffn(&pool_, a, T, ew, E, sub_offsets.data(), sub_rows.data(), sub_w.data(), y, &buffers_.moe);
    }
    cache_->release(c);
  }
  if (same_pool) prefetch_next(l, h_for_prediction, T);
}

void Model::stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const {
  std::lock_guard<std::mutex> lock(mutex_);
  *counts = counts_;
  *tokens = tokens_;
}

std::vector<EarlyRouting> Model::last_early_routing() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return early_;
}

void Model::set_early_routing_hook(EarlyRoutingHook hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  early_hook_ = std::move(hook);
}

bool Model::op_times(OpTimes* out) const {
  if (!spec_.profile_ops) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  *out = op_times_;
  return true;
}

std::vector<std::vector<int64_t>> Model::attention_stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return attn_counts_;
}

void Model::reset_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& c : counts_) std::fill(c.begin(), c.end(), 0);
  for (auto& c : attn_counts_) std::fill(c.begin(), c.end(), 0);
  tokens_ = 0;
}

KvCache::KvCache(const Model& model, int slots, int max_context) : slots_(slots), max_context_(max_context) {
  const ModelSpec& s = model.spec();
  if (slots <= 0 || max_context <= 0) throw std::runtime_error("slots and maxContext must be positive");
  row_ = size_t(s.kv_heads) * model.head_dim();
  size_t n = size_t(s.layers) * slots * max_context * row_;
  if (n / row_ / s.layers / slots != size_t(max_context) || n > (size_t(1) << 36))
    throw std::runtime_error("KV cache of " + std::to_string(slots) + " slots × " + std::to_string(max_context) +
                             " positions is too large");
  k_.assign(n, 0.f);
  v_.assign(n, 0.f);
  length_.assign(slots, 0);
}

SelectRule layer_rule(const LayerSpec& layer, const RoutingOverride& routing) {
  SelectRule rule = layer.select;
  if (routing.active) {
    rule.mode = routing.mode;
    if (routing.mode == SelectMode::TopK) rule.k = routing.k;
    if (routing.mode == SelectMode::Threshold) {
      // A plan converted for top-k caps k_max at its k; an explicit threshold override may use every expert.
      if (layer.select.mode != SelectMode::Threshold) rule.k_max = 0;
      rule.epsilon = routing.epsilon;
    }
  }
  return rule;
}

std::map<int, int> check_batch(int vocab, int cache_slots, int max_context, const std::vector<int>& lengths,
                               const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                               const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows) {
  const int T = int(tokens.size());
  // --- the addon re-checks what TypeScript already validated: nothing below may index out of bounds.
  if (T == 0) throw std::runtime_error("evaluate needs at least one token");
  if (slots.size() != tokens.size() || positions.size() != tokens.size())
    throw std::runtime_error("tokens, slots and positions must have the same length");
  std::map<int, int> next;  // slot → next position expected in this batch
  for (int t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab)
      throw std::runtime_error("token id " + std::to_string(tokens[t]) + " at index " + std::to_string(t) +
                               " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    if (slots[t] < 0 || slots[t] >= cache_slots)
      throw std::runtime_error("slot " + std::to_string(slots[t]) + " is outside [0, " + std::to_string(cache_slots) + ")");
    if (positions[t] < 0 || positions[t] >= max_context)
      throw std::runtime_error("position " + std::to_string(positions[t]) + " is outside the context of " +
                               std::to_string(max_context) + " tokens");
    auto it = next.find(slots[t]);
    int expect = it == next.end() ? -1 : it->second;
    bool ok = expect < 0 ? positions[t] <= lengths[slots[t]] : positions[t] == expect;
    if (!ok)
      throw std::runtime_error("token " + std::to_string(t) + " of slot " + std::to_string(slots[t]) + " is at position " +
                               std::to_string(positions[t]) + " but the slot holds " +
                               std::to_string(expect < 0 ? lengths[slots[t]] : expect) +
                               " positions: a slot's tokens must continue its sequence without gaps");
    next[slots[t]] = positions[t] + 1;
  }
  for (int32_t r : output_rows)
    if (r < 0 || r >= T) throw std::runtime_error("output row " + std::to_string(r) + " is outside [0, " + std::to_string(T) + ")");

  return next;
}

std::vector<float> Model::forward(KvCache& cache, const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                  const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows,
                                  const RoutingOverride& routing) {
  const ModelSpec& s = spec_;
  const int T = int(tokens.size());
  std::map<int, int> next = check_batch(s.vocab, cache.slots(), cache.max_context(), cache.lengths(), tokens, slots,
                                        positions, output_rows);

  std::lock_guard<std::mutex> lock(mutex_);
  ThreadPool* pool = &pool_;
  const int d = s.d, H = s.heads, KV = s.kv_heads, hd = head_dim(), E = s.experts;
  const int qn = H * hd, kvn = KV * hd, qkvn = qn + 2 * kvn;
  // Activations and scratch from the model's buffers (grown to the largest batch seen, reused): a decode step
  // allocates nothing, so it takes no page faults on fresh memory. Every buffer is written before it is read.
  ForwardBuffers& b = buffers_;
  float* h = grow(b.h, size_t(T) * d);          // [T, d] residual stream
  float* a = grow(b.a, size_t(T) * d);          // [T, d] normed
  float* qkv = grow(b.qkv, size_t(T) * qkvn);   // [T, (H+2KV)·hd]
  float* q = grow(b.q, size_t(T) * qn);         // [T, H·hd]
  float* kv = grow(b.kv, size_t(T) * kvn);      // [T, KV·hd] scratch for k before rope
  float* att = grow(b.att, size_t(T) * qn);     // [T, H·hd]
  float* probs = grow(b.probs, size_t(T) * E);  // [T, E]
  int32_t* sel_ids = grow(b.sel_ids, size_t(T) * E);
  int32_t* sel_count = grow(b.sel_count, size_t(T));
  int32_t* expert_count = grow(b.expert_count, size_t(E));
  int32_t* offsets = grow(b.offsets, size_t(E) + 1);
  int32_t* rows = grow(b.rows, size_t(T) * E);
  float* sel_w = grow(b.sel_w, size_t(T) * E);
  float* row_w = grow(b.row_w, size_t(T) * E);
  int32_t* next_ids = grow(b.next_ids, size_t(T) * E);  // a pre-gated next layer's selection
  int32_t* next_count = grow(b.next_count, size_t(T));
  float* next_w = grow(b.next_w, size_t(T) * E);
  early_.clear();
  // Router of `layer` over the rows `x` [T, d] (softmax over all E), then its select rule (or the override).
  auto route = [&](int layer, const float* x, int32_t* ids, float* w, int32_t* count) {
    const LayerSpec& R = s.layer[layer];
    linear(pool, x, T, d, R.router.data, DType::F32, E, probs, E, Epilogue{});
    softmax_rows(probs, T, E);
    SelectRule rule = layer_rule(R, routing);
    rule.allowed = allowed_[layer].data();
    select_experts(probs, T, E, rule, E, ids, w, count);
  };

  OpClock clock(s.profile_ops);  // after the buffers above: their allocation is in no phase
  embedding(pool, s.embed.data, s.embed.dtype, d, tokens.data(), T, h);
  clock.lap(Op::Embedding);
  AttentionShape shape{H, KV, hd, size_t(cache.max_context()) * kvn};
  for (int l = 0; l < s.layers; ++l) {
    const LayerSpec& L = s.layer[l];
    // --- attention block
    rmsnorm(pool, h, static_cast<const float*>(L.attn_norm.data), T, d, s.rms_eps, a);
    clock.lap(Op::Norm);
    if (L.attn_experts > 0) {
      // MoA (moa_attention.cpp): its router, q/k/v, attention and W_o all count as the attention phase.
      moa_attention(l, a, T, slots.data(), positions.data(), cache, routing, h);
      clock.lap(Op::Attention);
    } else {
      Epilogue with_bias;
      with_bias.bias = static_cast<const float*>(L.qkv_bias.data);
      linear(pool, a, T, d, L.qkv.data, s.attn_dtype, qkvn, qkv, qkvn, with_bias);
      clock.lap(Op::Qkv);
      for (int t = 0; t < T; ++t) std::copy_n(qkv + size_t(t) * qkvn, qn, q + size_t(t) * qn);
      rope(pool, q, T, H, hd, positions.data(), s.rope_theta);
      for (int t = 0; t < T; ++t) std::copy_n(qkv + size_t(t) * qkvn + qn, kvn, kv + size_t(t) * kvn);
      rope(pool, kv, T, KV, hd, positions.data(), s.rope_theta);
      float* kc = cache.k(l);
      float* vc = cache.v(l);
      for (int t = 0; t < T; ++t) {
        size_t at = size_t(slots[t]) * shape.slot_stride + size_t(positions[t]) * kvn;
        std::copy_n(kv + size_t(t) * kvn, kvn, kc + at);
        std::copy_n(qkv + size_t(t) * qkvn + qn + kvn, kvn, vc + at);
      }
      attention(pool, q, kc, vc, slots.data(), positions.data(), T, shape, att);
      clock.lap(Op::Attention);
      Epilogue residual;
      residual.accumulate = true;  // h += o·Woᵀ
      linear(pool, att, T, qn, L.o.data, s.attn_dtype, d, h, d, residual);
      clock.lap(Op::AttnOut);
    }

    // --- MoE block: router over all E experts, selection, grouped experts added straight into h
    rmsnorm(pool, h, static_cast<const float*>(L.mlp_norm.data), T, d, s.rms_eps, a);
    clock.lap(Op::Norm);
    if (L.pre_gate) {
      // Routed one block early, from the previous layer's mlp_norm output (below): use exactly that selection.
      std::swap(sel_ids, next_ids);
      std::swap(sel_w, next_w);
      std::swap(sel_count, next_count);
    } else {
      route(l, a, sel_ids, sel_w, sel_count);
    }
    if (l + 1 < s.layers && s.layer[l + 1].pre_gate) {
      // Megrez2's pre-gate: layer l+1's router reads this layer's mlp_norm output, so its experts are known now,
      // before this layer's experts and the next attention run.
      route(l + 1, a, next_ids, next_w, next_count);
      EarlyRouting early;
      early.layer = l + 1;
      early.count.assign(next_count, next_count + T);
      early.ids.assign(next_ids, next_ids + size_t(T) * E);
      early.weights.assign(next_w, next_w + size_t(T) * E);
      std::vector<uint8_t> needed(E, 0);
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < next_count[t]; ++j) needed[next_ids[size_t(t) * E + j]] = 1;
      for (int e = 0; e < E; ++e)
        if (needed[e]) early.experts.push_back(e);
      if (early_hook_) early_hook_(early);
      early_.push_back(std::move(early));
    }
    group_by_expert(sel_ids, sel_w, sel_count, T, E, E, expert_count, offsets,
                    rows, row_w);
    for (int e = 0; e < E; ++e) counts_[l][e] += expert_count[e];
    clock.lap(Op::Router);
    if (cache_) {
      moe_cached(l, a, T, offsets, rows, row_w, h, h);
    } else {
      ExpertWeights ew{L.gate_up.data, L.down.data, s.expert_dtype, d, L.intermediate, slot_of_[l].data()};
      moe_ffn(pool, a, T, ew, E, offsets, rows, row_w, h, &b.moe);
    }
    clock.lap(Op::Experts);
    if (L.shared_intermediate > 0) {
      const int Is = L.shared_intermediate;
      float* gu = grow(b.shared_gu, size_t(T) * 2 * Is);  // [T, 2·Is]
      float* hs = grow(b.shared_h, size_t(T) * Is);       // [T, Is]
      float* gate = grow(b.shared_gate, size_t(T));
      const float* wsg = static_cast<const float*>(L.shared_gate.data);
      for (int t = 0; t < T; ++t) {  // sigmoid(m·w_sg)
        double z = 0;
        for (int j = 0; j < d; ++j) z += double(a[size_t(t) * d + j]) * wsg[j];
        gate[t] = float(1.0 / (1.0 + std::exp(-z)));
      }
      linear(pool, a, T, d, L.shared_gate_up.data, s.dtype, 2 * Is, gu, 2 * Is, Epilogue{});
      swiglu(gu, T, Is, hs);
      Epilogue ep;
      ep.row_scale = gate;
      ep.accumulate = true;
      linear(pool, hs, T, Is, L.shared_down.data, s.dtype, d, h, d, ep);
      clock.lap(Op::SharedExpert);
    }
  }
  tokens_ += T;
  for (auto& [slot, n] : next) cache.set_length(slot, n);
  if (cache_ && s.expert_cache.reload_every_step) cache_->invalidate();

  // --- final norm and LM head on the requested rows only
  const int R = int(output_rows.size());
  std::vector<float> logits(size_t(R) * s.vocab);  // [R, V]
  if (R == 0) {
    clock.add_to(op_times_);
    return logits;
  }
  float* hr = grow(b.hr, size_t(R) * d);  // [R, d]
  for (int r = 0; r < R; ++r) std::copy_n(h + size_t(output_rows[r]) * d, d, hr + size_t(r) * d);
  rmsnorm(pool, hr, static_cast<const float*>(s.norm.data), R, d, s.rms_eps, hr);
  clock.lap(Op::Norm);
  linear(pool, hr, R, d, s.lm_head.data, s.lm_head.dtype, s.vocab, logits.data(), s.vocab, Epilogue{});
  clock.lap(Op::LmHead);
  clock.add_to(op_times_);
  return logits;
}

}  // namespace dsmoe
