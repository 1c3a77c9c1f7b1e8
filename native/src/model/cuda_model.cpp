#include "cuda_model.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "../../cuda/dsmoe_cuda.h"
#include "../../cuda/dsmoe_cuda_expert_cache.h"

namespace dsmoe {

namespace {

void check(int status, const std::string& what) {
  if (status != 0) throw std::runtime_error("CUDA " + what + " failed: " + dsmoe_cuda_error_string(status));
}

size_t elements(const TensorRef& t) {
  size_t n = 1;
  for (int64_t v : t.shape) n *= size_t(v);
  return n;
}

// Matrices go to the device as bf16 (the kernels' weight type): bf16 plans as stored, f32 / f16 rounded once here.
void upload_matrix(DeviceBuffer& dst, const TensorRef& t, void* stream) {
  const size_t n = elements(t);
  dst.grow(n * 2, t.name.c_str());
  if (t.dtype == DType::BF16) {
    check(dsmoe_cuda_memcpy_htod(dst.as<void>(), t.data, n * 2, stream), "upload of " + t.name);
    return;
  }
  std::vector<uint16_t> bits(n);
  for (size_t i = 0; i < n; ++i) bits[i] = f32_to_bf16(load_f32(t.data, t.dtype, i));
  // pageable source: the call returns once `bits` is staged, so it may go out of scope after
  check(dsmoe_cuda_memcpy_htod(dst.as<void>(), bits.data(), n * 2, stream), "upload of " + t.name);
}

// Norms, biases, routers and the shared-expert gate stay f32 (the plan stores them so; Model checked it).
void upload_f32(DeviceBuffer& dst, const TensorRef& t, void* stream) {
  const size_t bytes = elements(t) * 4;
  dst.grow(bytes, t.name.c_str());
  check(dsmoe_cuda_memcpy_htod(dst.as<void>(), t.data, bytes, stream), "upload of " + t.name);
}

template <class T>
void upload_vector(DeviceBuffer& dst, const std::vector<T>& v, void* stream, const char* what) {
  dst.grow(v.size() * sizeof(T), what);
  check(dsmoe_cuda_memcpy_htod(dst.as<void>(), v.data(), v.size() * sizeof(T), stream), std::string("upload of ") + what);
}

// The kernels' shape limits (dsmoe_cuda.h), checked once so a plan they cannot serve fails at load with its numbers.
void check_shapes(const ModelSpec& s, int hd) {
  auto need = [](bool ok, const std::string& message) {
    if (!ok) throw std::runtime_error("the CUDA runtime cannot serve this plan: " + message);
  };
  need(s.d % 32 == 0, "hidden size " + std::to_string(s.d) + " is not a multiple of 32");
  need(hd == 32 || hd == 64 || hd == 128 || hd == 256, "head dim " + std::to_string(hd) + " is not 32, 64, 128 or 256");
  need(s.heads / s.kv_heads <= 8, std::to_string(s.heads / s.kv_heads) + " query heads per kv head (at most 8)");
  need(s.experts <= 256, std::to_string(s.experts) + " experts (at most 256)");
  for (size_t l = 0; l < s.layer.size(); ++l) {
    const LayerSpec& L = s.layer[l];
    std::string at = "layer " + std::to_string(l) + ": ";
    need(L.intermediate % 32 == 0, at + "expert intermediate size " + std::to_string(L.intermediate) + " is not a multiple of 32");
    need(L.shared_intermediate % 32 == 0,
         at + "shared expert intermediate size " + std::to_string(L.shared_intermediate) + " is not a multiple of 32");
  }
}

// The layer's selection in the kernels' terms: dense = top-k over every kept expert; k never above the kept count.
dsmoe_cuda_moe_select cuda_select(const LayerSpec& L, const RoutingOverride& routing, int layer) {
  const SelectRule rule = layer_rule(L, routing);
  const int K = int(L.kept.size());
  dsmoe_cuda_moe_select s{DSMOE_SELECT_TOPK, K, 0.f, rule.renormalize ? 1 : 0};
  if (rule.mode == SelectMode::TopK) s.k = std::min(K, std::max(1, rule.k));
  if (rule.mode == SelectMode::Threshold) {
    s.mode = DSMOE_SELECT_THRESHOLD;
    s.k = std::min(K, rule.k_max > 0 ? rule.k_max : K);
    s.epsilon = rule.epsilon;
  }
  if (s.k > 32)
    throw std::runtime_error("layer " + std::to_string(layer) + ": the CUDA runtime selects at most 32 experts per token, this " +
                             (rule.mode == SelectMode::Dense ? std::string("dense") : std::string("plan's")) +
                             " selection needs " + std::to_string(s.k));
  return s;
}

}  // namespace

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) dsmoe_cuda_free(ptr_);
}

void DeviceBuffer::grow(size_t bytes, const char* what) {
  if (bytes <= bytes_ && ptr_) return;
  if (ptr_) dsmoe_cuda_free(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  check(dsmoe_cuda_malloc(&ptr_, std::max<size_t>(bytes, 256)), "allocation of " + std::to_string(bytes) + " bytes for " + what);
  bytes_ = std::max<size_t>(bytes, 256);
}

struct CudaModel::Scratch {
  DeviceBuffer h, a, qkv, att, batch, rows_h, logits, sel_ids, shared_ids, shared_w, shared_h, guess_m, workspace;
};

static ModelSpec host_spec(ModelSpec spec) {
  spec.threads = 1;  // the host model only maps and checks; it never computes
  spec.expert_cache = ExpertCacheSpec{};  // nor reads experts on demand: the device cache does (below)
  return spec;
}

static ModelSpec with_cache(ModelSpec spec, const ExpertCacheSpec& cache) {
  spec.expert_cache = cache;
  return spec;
}

static dsmoe_cuda_expert_cache* as_cache(void* p) { return static_cast<dsmoe_cuda_expert_cache*>(p); }

// Fills a pinned host tier with a tensor's matrices as bf16: bf16 plans as stored, f32 / f16 rounded once here.
static void fill_bf16(uint16_t* dst, const TensorRef& t) {
  const size_t n = elements(t);
  if (t.dtype == DType::BF16) {
    std::memcpy(dst, t.data, n * 2);
    return;
  }
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(load_f32(t.data, t.dtype, i));
}

CudaModel::CudaModel(ModelSpec spec)
    : cache_spec_(spec.expert_cache),
      host_(host_spec(std::move(spec))),
      spec_(with_cache(host_.spec(), cache_spec_)),
      scratch_(std::make_unique<Scratch>()) {
  const ModelSpec& s = host_.spec();
  if (dsmoe_cuda_device_count() <= 0) throw std::runtime_error("no CUDA device is visible (no driver, no GPU, or too old a driver)");
  const bool caching = cache_spec_.slots > 0;
  if (caching && cache_spec_.direct_io)
    throw std::runtime_error("the expert cache's direct I/O is a CPU runtime option: on CUDA the experts are read from pinned host memory");
  for (const LayerSpec& L : s.layer) {
    if (L.pre_gate)  // refused before any device work: routing on this layer's own input would change the model
      throw std::runtime_error("the CUDA runtime does not run pre-gated routing (Megrez2 pre_gate) yet; use the CPU runtime");
    if (L.attn_experts > 0)  // likewise: plain attention over packed MoA tensors would read the wrong rows
      throw std::runtime_error("the CUDA runtime does not run attention experts (MoA) yet; use the CPU runtime");
  }
  check_shapes(s, head_dim());
  check(dsmoe_cuda_set_device(0), "set_device(0)");
  char name[256] = {0};
  check(dsmoe_cuda_device_name(0, name, sizeof name), "device_name");
  device_name_ = name;
  check(dsmoe_cuda_stream_create(&stream_), "stream_create");
  try {
    upload_matrix(embed_, s.embed, stream_);
    upload_f32(norm_, s.norm, stream_);
    lm_head_is_embed_ = s.lm_head.offset == s.embed.offset;
    if (!lm_head_is_embed_) upload_matrix(lm_head_, s.lm_head, stream_);
    layers_.resize(s.layers);
    for (int l = 0; l < s.layers; ++l) {
      const LayerSpec& L = s.layer[l];
      Layer& D = layers_[l];
      upload_f32(D.attn_norm, L.attn_norm, stream_);
      upload_matrix(D.qkv, L.qkv, stream_);
      upload_f32(D.qkv_bias, L.qkv_bias, stream_);
      upload_matrix(D.o, L.o, stream_);
      upload_f32(D.mlp_norm, L.mlp_norm, stream_);
      upload_f32(D.router, L.router, stream_);
      if (!caching) {
        upload_matrix(D.gate_up, L.gate_up, stream_);
        upload_matrix(D.down, L.down, stream_);
      }
      std::vector<int32_t> slot(s.experts, -1);  // expert → kept-order slot, −1 when pruned
      for (size_t i = 0; i < L.kept.size(); ++i) slot[L.kept[i]] = int32_t(i);
      upload_vector(D.expert_slot, slot, stream_, "expert_slot");
      if (L.shared_intermediate > 0) {
        upload_matrix(D.shared_gate_up, L.shared_gate_up, stream_);
        upload_matrix(D.shared_down, L.shared_down, stream_);
        upload_f32(D.shared_gate, L.shared_gate, stream_);
      }
    }
    if (caching) {
      // one cache layer per expert pool (a Megrez2 pool's later layers hold nothing and read its first layer's)
      std::vector<dsmoe_cuda_cached_layer> pools(s.layers, dsmoe_cuda_cached_layer{0, s.d, 0});
      for (int l = 0; l < s.layers; ++l)
        if (s.layer[l].pool == l) pools[l] = {int(s.layer[l].kept.size()), s.d, s.layer[l].intermediate};
      dsmoe_cuda_expert_cache* cache = nullptr;
      check(dsmoe_cuda_expert_cache_create(&cache, pools.data(), s.layers, cache_spec_.slots, stream_),
            "expert cache allocation (" + std::to_string(cache_spec_.slots) + " experts per layer)");
      expert_cache_ = cache;
      for (int l = 0; l < s.layers; ++l) {
        if (pools[l].K == 0) continue;
        uint16_t *gate_up, *down;
        check(dsmoe_cuda_expert_cache_host(cache, l, &gate_up, &down), "expert cache host tier");
        fill_bf16(gate_up, s.layer[l].gate_up);
        fill_bf16(down, s.layer[l].down);
      }
    }
    check(dsmoe_cuda_stream_synchronize(stream_), "upload");
  } catch (...) {
    if (expert_cache_) dsmoe_cuda_expert_cache_destroy(as_cache(expert_cache_));
    expert_cache_ = nullptr;
    layers_.clear();
    dsmoe_cuda_stream_destroy(stream_);
    throw;
  }
  counts_.assign(s.layers, std::vector<int64_t>(s.experts, 0));
}

CudaModel::~CudaModel() {
  dsmoe_cuda_stream_synchronize(stream_);
  if (expert_cache_) dsmoe_cuda_expert_cache_destroy(as_cache(expert_cache_));
  scratch_.reset();
  layers_.clear();
  dsmoe_cuda_stream_destroy(stream_);
}

void CudaModel::stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const {
  std::lock_guard<std::mutex> lock(mutex_);
  *counts = counts_;
  *tokens = tokens_;
}

void CudaModel::reset_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& c : counts_) std::fill(c.begin(), c.end(), 0);
  tokens_ = 0;
}

bool CudaModel::cache_stats(ExpertCacheStats* out) const {
  if (!expert_cache_) return false;
  dsmoe_cuda_expert_cache_counters c{};
  check(dsmoe_cuda_expert_cache_stats(as_cache(expert_cache_), &c), "expert cache stats");
  *out = ExpertCacheStats{};
  out->hits = c.hits;
  out->misses = c.misses;
  out->loads = c.loads;
  out->bytes_read = c.bytes_copied;  // host → device copies: the device cache's reads from its slow tier
  out->stall_seconds = c.stall_seconds;
  out->prefetches = c.prefetches;
  out->predicted = c.predicted;
  out->predicted_used = c.predicted_used;
  out->demanded_predicted = c.demanded_predicted;
  out->in_flight = c.in_flight;
  return true;
}

std::vector<float> CudaModel::forward(CudaKvCache& cache, const std::vector<int32_t>& tokens,
                                      const std::vector<int32_t>& slots, const std::vector<int32_t>& positions,
                                      const std::vector<int32_t>& output_rows, const RoutingOverride& routing) {
  const ModelSpec& s = host_.spec();
  std::map<int, int> next = check_batch(s.vocab, cache.slots(), cache.max_context(), cache.lengths(), tokens, slots,
                                        positions, output_rows);
  const int T = int(tokens.size()), R = int(output_rows.size());
  const int d = s.d, H = s.heads, KV = s.kv_heads, hd = head_dim(), E = s.experts, V = s.vocab;
  const int qn = H * hd, qkvn = qn + 2 * KV * hd, max_ctx = cache.max_context();

  // Selections and workspace per layer (the routing override changes k, so both are sized per call).
  std::vector<dsmoe_cuda_moe_weights> moe(s.layers);
  std::vector<dsmoe_cuda_moe_select> select(s.layers);
  // The speculative prefetch (as the CPU runtime's Model::prefetch_next): layer l+1's router on layer l's residual
  // after attention, normed with layer l+1's mlp_norm, top (plan's k + margin) experts per token. k = 0: none.
  std::vector<dsmoe_cuda_moe_guess> guess(s.layers, dsmoe_cuda_moe_guess{-1, nullptr, nullptr, nullptr, E, 0, 0});
  auto next_layer_guess = [&](int l) {
    dsmoe_cuda_moe_guess g{-1, nullptr, nullptr, nullptr, E, 0, 0};
    if (!cache_spec_.prefetch || l + 1 >= s.layers) return g;
    const LayerSpec& N = s.layer[l + 1];
    g.layer = N.pool;
    g.router = layers_[l + 1].router.as<float>();
    g.expert_slot = layers_[l + 1].expert_slot.as<int>();
    g.K = int(N.kept.size());
    g.k = std::min({g.K, std::max(1, N.select.k) + cache_spec_.prefetch_margin, 32});
    return g;
  };
  std::vector<size_t> sel_at(s.layers + 1, 0);  // layer l's sel_ids start at sel_at[l] ints
  size_t workspace = std::max({dsmoe_cuda_linear_workspace_size(T, std::max(d, qn)),
                               dsmoe_cuda_linear_workspace_size(std::max(R, 1), d),
                               dsmoe_cuda_attention_workspace_size(T, H, hd, max_ctx)});
  int shared_max = 0;
  for (int l = 0; l < s.layers; ++l) {
    const LayerSpec& L = s.layer[l];
    const Layer& D = layers_[l];
    select[l] = cuda_select(L, routing, l);
    moe[l] = {D.router.as<float>(), D.expert_slot.as<int>(), D.gate_up.as<uint16_t>(), D.down.as<uint16_t>(),
              E, int(L.kept.size()), d, L.intermediate, nullptr, nullptr};
    if (expert_cache_) {
      guess[l] = next_layer_guess(l);
      workspace = std::max(workspace, dsmoe_cuda_moe_cached_workspace_size(T, &moe[l], &select[l],
                                                                           guess[l].k > 0 ? &guess[l] : nullptr));
    }
    workspace = std::max(workspace, dsmoe_cuda_moe_workspace_size(T, &moe[l], &select[l]));
    sel_at[l + 1] = sel_at[l] + size_t(T) * select[l].k;
    shared_max = std::max(shared_max, L.shared_intermediate);
  }

  std::lock_guard<std::mutex> lock(mutex_);
  check(dsmoe_cuda_set_device(0), "set_device(0)");  // per thread: forward runs on a libuv worker
  Scratch& S = *scratch_;
  S.h.grow(size_t(T) * d * 4, "h");
  S.a.grow(size_t(T) * d * 4, "a");
  S.qkv.grow(size_t(T) * qkvn * 4, "qkv");
  S.att.grow(size_t(T) * qn * 4, "attention output");
  S.sel_ids.grow(sel_at[s.layers] * 4, "sel_ids");
  S.workspace.grow(workspace, "workspace");
  if (expert_cache_ && cache_spec_.prefetch) S.guess_m.grow(size_t(T) * d * 4, "guess input");
  if (shared_max > 0) {
    S.shared_ids.grow(size_t(T) * 4, "shared expert ids");
    S.shared_w.grow(size_t(T) * 4, "shared expert gates");
    S.shared_h.grow(size_t(T) * shared_max * 4, "shared expert h");
  }
  std::vector<int32_t> batch(tokens);  // [tokens | slots | positions] in one upload
  batch.insert(batch.end(), slots.begin(), slots.end());
  batch.insert(batch.end(), positions.begin(), positions.end());
  upload_vector(S.batch, batch, stream_, "batch");
  const int* tok_d = S.batch.as<int>();
  const int* slot_d = tok_d + T;
  const int* pos_d = tok_d + 2 * T;
  void* ws = S.workspace.as<void>();
  const size_t ws_bytes = S.workspace.bytes();
  float* h = S.h.as<float>();
  float* a = S.a.as<float>();
  float* qkv = S.qkv.as<float>();
  float* att = S.att.as<float>();

  check(dsmoe_cuda_embed(embed_.as<uint16_t>(), tok_d, h, T, d, stream_), "embed");
  for (int l = 0; l < s.layers; ++l) {
    const LayerSpec& L = s.layer[l];
    const Layer& D = layers_[l];
    const std::string at = " (layer " + std::to_string(l) + ")";
    // --- attention block
    check(dsmoe_cuda_rms_norm(h, D.attn_norm.as<float>(), a, nullptr, T, d, s.rms_eps, stream_), "rms_norm" + at);
    check(dsmoe_cuda_linear(a, D.qkv.as<uint16_t>(), D.qkv_bias.as<float>(), qkv, T, d, qkvn, 0, ws, ws_bytes, stream_),
          "qkv" + at);
    check(dsmoe_cuda_rope_kv_append(qkv, T, H, KV, hd, slot_d, pos_d, s.rope_theta, cache.k(l), cache.v(l), max_ctx, stream_),
          "rope_kv_append" + at);
    check(dsmoe_cuda_attention(qkv, T, H, KV, hd, slot_d, pos_d, cache.k(l), cache.v(l), max_ctx, att, ws, ws_bytes, stream_),
          "attention" + at);
    check(dsmoe_cuda_linear(att, D.o.as<uint16_t>(), nullptr, h, T, qn, d, 1, ws, ws_bytes, stream_), "o" + at);
    // --- MoE block, added into the residual stream
    check(dsmoe_cuda_rms_norm(h, D.mlp_norm.as<float>(), a, nullptr, T, d, s.rms_eps, stream_), "rms_norm" + at);
    if (expert_cache_) {
      dsmoe_cuda_moe_guess* g = guess[l].k > 0 ? &guess[l] : nullptr;
      if (g) {  // h is layer l's residual after attention: what the CPU runtime's guess reads too
        check(dsmoe_cuda_rms_norm(h, layers_[l + 1].mlp_norm.as<float>(), S.guess_m.as<float>(), nullptr, T, d, s.rms_eps,
                                  stream_),
              "guess rms_norm" + at);
        g->m = S.guess_m.as<float>();
      }
      const int status = dsmoe_cuda_moe_forward_cached(as_cache(expert_cache_), L.pool, &moe[l], &select[l], a, T, h,
                                                       S.sel_ids.as<int>() + sel_at[l], nullptr, nullptr,
                                                       DSMOE_PATH_AUTO, g, ws, ws_bytes);
      const std::string refusal = dsmoe_cuda_expert_cache_refusal(as_cache(expert_cache_));
      if (status != 0 && !refusal.empty())  // a selection the slots cannot hold: the reason, not the error code
        throw std::runtime_error("layer " + std::to_string(l) + ": " + refusal + " (use a larger --expert-cache)");
      check(status, "moe_forward with the expert cache" + at);
    } else {
      check(dsmoe_cuda_moe_forward(&moe[l], &select[l], a, T, h, S.sel_ids.as<int>() + sel_at[l], nullptr, nullptr,
                                   DSMOE_PATH_AUTO, ws, ws_bytes, stream_),
            "moe_forward" + at);
    }
    if (L.shared_intermediate > 0) {  // a one-expert MoE with its sigmoid gate as the routing weight
      const int Is = L.shared_intermediate;
      int* ids = S.shared_ids.as<int>();
      float* gate = S.shared_w.as<float>();
      check(dsmoe_cuda_shared_expert_gate(a, D.shared_gate.as<float>(), T, d, ids, gate, stream_), "shared_expert_gate" + at);
      check(dsmoe_cuda_moe_gemv_gate_up(a, D.shared_gate_up.as<uint16_t>(), ids, T, 1, d, Is, S.shared_h.as<float>(), stream_),
            "shared expert gate_up" + at);
      check(dsmoe_cuda_moe_gemv_down(S.shared_h.as<float>(), D.shared_down.as<uint16_t>(), ids, gate, T, 1, d, Is, h, stream_),
            "shared expert down" + at);
    }
  }

  // --- final norm and LM head on the requested rows only, then the logits and the selections come back
  std::vector<float> logits(size_t(R) * V);
  if (R > 0) {
    S.rows_h.grow(size_t(R) * d * 4, "output rows");
    S.logits.grow(size_t(R) * V * 4, "logits");
    float* hr = S.rows_h.as<float>();
    for (int r = 0; r < R; ++r)
      check(dsmoe_cuda_memcpy_dtod(hr + size_t(r) * d, h + size_t(output_rows[r]) * d, size_t(d) * 4, stream_), "row gather");
    check(dsmoe_cuda_rms_norm(hr, norm_.as<float>(), hr, nullptr, R, d, s.rms_eps, stream_), "final rms_norm");
    const uint16_t* head = lm_head_is_embed_ ? embed_.as<uint16_t>() : lm_head_.as<uint16_t>();
    check(dsmoe_cuda_linear(hr, head, nullptr, S.logits.as<float>(), R, d, V, 0, ws, ws_bytes, stream_), "lm_head");
    check(dsmoe_cuda_memcpy_dtoh(logits.data(), S.logits.as<float>(), logits.size() * 4, stream_), "logits download");
  }
  std::vector<int32_t> sel(sel_at[s.layers]);
  check(dsmoe_cuda_memcpy_dtoh(sel.data(), S.sel_ids.as<int>(), sel.size() * 4, stream_), "selection download");
  for (int l = 0; l < s.layers; ++l) {
    const std::vector<int32_t>& kept = s.layer[l].kept;
    for (size_t i = sel_at[l]; i < sel_at[l + 1]; ++i)
      if (sel[i] >= 0 && sel[i] < int32_t(kept.size())) counts_[l][kept[sel[i]]] += 1;
  }
  tokens_ += T;
  for (auto& [slot, n] : next) cache.set_length(slot, n);
  if (expert_cache_ && cache_spec_.reload_every_step)
    check(dsmoe_cuda_expert_cache_invalidate(as_cache(expert_cache_)), "expert cache invalidate");
  return logits;
}

CudaKvCache::CudaKvCache(const CudaModel& model, int slots, int max_context) : slots_(slots), max_context_(max_context) {
  const ModelSpec& s = model.spec();
  if (slots <= 0 || max_context <= 0) throw std::runtime_error("slots and maxContext must be positive");
  layer_floats_ = size_t(slots) * max_context * s.kv_heads * model.head_dim();
  const size_t n = layer_floats_ * s.layers;
  if (n / s.layers / slots / max_context != size_t(s.kv_heads) * model.head_dim() || n > (size_t(1) << 36))
    throw std::runtime_error("KV cache of " + std::to_string(slots) + " slots × " + std::to_string(max_context) +
                             " positions is too large");
  check(dsmoe_cuda_set_device(0), "set_device(0)");
  k_.grow(n * 4, "the k cache");
  v_.grow(n * 4, "the v cache");
  // Only written positions are ever read; zeroed anyway so a bug cannot read another run's values.
  check(dsmoe_cuda_memset(k_.as<void>(), 0, n * 4, nullptr), "k cache memset");
  check(dsmoe_cuda_memset(v_.as<void>(), 0, n * 4, nullptr), "v cache memset");
  check(dsmoe_cuda_stream_synchronize(nullptr), "KV cache allocation");
  length_.assign(slots, 0);
}

}  // namespace dsmoe
