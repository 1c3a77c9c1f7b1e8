// The attention block of a MoA layer (design.md §12): the attention router's softmax over all A experts on the
// attention input, the plan's selection per token, k/v for every token (the KV cache is unchanged), q only for the
// heads of the experts each token selected, attention only over those heads, and Σ pa_a · o_a·Wo_aᵀ over the selected
// experts, added into the residual stream. Tokens are grouped by attention expert across the batch, as tokens are
// grouped by MLP expert, so each expert's q rows and W_o columns are read once per batch. Every product is the
// existing linear() (its epilogue scatters q rows into their heads and adds the weighted outputs into h).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "model.h"

namespace dsmoe {

void Model::check_moa_layer(int l) {
  LayerSpec& L = spec_.layer[l];
  const ModelSpec& s = spec_;
  const std::string at = "layer " + std::to_string(l) + ": ";
  const int A = L.attn_experts, Nh = L.heads_per_expert, K = int(L.attn_kept.size());
  if (Nh <= 0 || A * Nh != s.heads)
    throw std::runtime_error(at + std::to_string(A) + " attention experts × " + std::to_string(Nh) +
                             " heads do not make the " + std::to_string(s.heads) + " attention heads");
  if (K <= 0) throw std::runtime_error(at + "no attention experts kept");
  attn_allowed_.resize(s.layers);
  attn_slot_.resize(s.layers);
  attn_allowed_[l].assign(A, 0);
  attn_slot_[l].assign(A, -1);
  for (int i = 0; i < K; ++i) {
    const int a = L.attn_kept[i];
    if (a < 0 || a >= A || attn_allowed_[l][a] || (i > 0 && a <= L.attn_kept[i - 1]))
      throw std::runtime_error(at + "kept attention expert list has a bad, repeated or unordered id " + std::to_string(a));
    attn_allowed_[l][a] = 1;
    attn_slot_[l][a] = i;
  }
  if (L.attn_select.mode == SelectMode::TopK && (L.attn_select.k <= 0 || L.attn_select.k > K))
    throw std::runtime_error(at + "attention top-k needs k in 1.." + std::to_string(K));
  const int64_t d = s.d, hd = head_dim(), width = int64_t(Nh) * hd, rows = (int64_t(K) * Nh + 2 * s.kv_heads) * hd;
  check_tensor(L.attn_router, {A, d}, DType::F32);
  check_tensor(L.qkv, {rows, d}, s.attn_dtype);
  check_tensor(L.qkv_bias, {rows}, DType::F32);
  check_tensor(L.o, {K, d, width}, s.attn_dtype);
}

void Model::moa_attention(int l, const float* a, int T, const int32_t* slots, const int32_t* positions, KvCache& cache,
                          const RoutingOverride& routing, float* h) {
  const ModelSpec& s = spec_;
  const LayerSpec& L = s.layer[l];
  ThreadPool* pool = &pool_;
  const int d = s.d, H = s.heads, KV = s.kv_heads, hd = head_dim(), A = L.attn_experts, Nh = L.heads_per_expert;
  const int K = int(L.attn_kept.size()), width = Nh * hd, qn = H * hd, kvn = KV * hd;
  const DType dt = s.attn_dtype;
  const char* qkv = static_cast<const char*>(L.qkv.data);
  const char* wo = static_cast<const char*>(L.o.data);
  const float* bias = static_cast<const float*>(L.qkv_bias.data);

  // --- router over all A experts, the plan's selection (a dense override: every kept expert), grouped by expert
  std::vector<float> pa(size_t(T) * A);  // [T, A]
  linear(pool, a, T, d, L.attn_router.data, DType::F32, A, pa.data(), A, Epilogue{});
  softmax_rows(pa.data(), T, A);
  SelectRule rule = L.attn_select;
  if (routing.active && routing.mode == SelectMode::Dense) rule.mode = SelectMode::Dense;
  rule.allowed = attn_allowed_[l].data();
  std::vector<int32_t> ids(size_t(T) * A), count(T), expert_count(A), offsets(A + 1), rows(size_t(T) * A);
  std::vector<float> w(size_t(T) * A), row_w(size_t(T) * A);
  select_experts(pa.data(), T, A, rule, A, ids.data(), w.data(), count.data());
  group_by_expert(ids.data(), w.data(), count.data(), T, A, A, expert_count.data(), offsets.data(), rows.data(),
                  row_w.data());
  for (int e = 0; e < A; ++e) attn_counts_[l][e] += expert_count[e];

  // --- k and v of every token into the cache (rows K·N_h·hd … of the packed qkv)
  std::vector<float> kv(size_t(T) * 2 * kvn), k(size_t(T) * kvn);  // [T, 2·KV·hd], [T, KV·hd]
  Epilogue kv_bias;
  kv_bias.bias = bias + size_t(K) * width;
  linear(pool, a, T, d, qkv + bytes_of(dt, uint64_t(K) * width * d), dt, 2 * kvn, kv.data(), 2 * kvn, kv_bias);
  for (int t = 0; t < T; ++t) std::copy_n(kv.data() + size_t(t) * 2 * kvn, kvn, k.data() + size_t(t) * kvn);
  rope(pool, k.data(), T, KV, hd, positions, s.rope_theta);
  const AttentionShape plain{H, KV, hd, size_t(cache.max_context()) * kvn};
  float* kc = cache.k(l);
  float* vc = cache.v(l);
  for (int t = 0; t < T; ++t) {
    size_t at = size_t(slots[t]) * plain.slot_stride + size_t(positions[t]) * kvn;
    std::copy_n(k.data() + size_t(t) * kvn, kvn, kc + at);
    std::copy_n(kv.data() + size_t(t) * 2 * kvn + kvn, kvn, vc + at);
  }

  // --- q of the selected experts' heads only, written at their original head index (which picks the kv head)
  std::vector<float> q(size_t(T) * qn, 0.f), gathered;  // q [T, H·hd]; heads nobody selected stay 0 and unused
  std::vector<uint8_t> active(size_t(T) * H, 0);        // [T, H]
  for (int e = 0; e < A; ++e) {
    const int n = offsets[e + 1] - offsets[e], slot = attn_slot_[l][e];
    if (n == 0 || slot < 0) continue;
    const int32_t* tok = rows.data() + offsets[e];
    gathered.resize(size_t(n) * d);
    for (int r = 0; r < n; ++r) std::copy_n(a + size_t(tok[r]) * d, d, gathered.data() + size_t(r) * d);
    Epilogue ep;
    ep.bias = bias + size_t(slot) * width;
    ep.scatter = tok;
    linear(pool, gathered.data(), n, d, qkv + bytes_of(dt, uint64_t(slot) * width * d), dt, width,
           q.data() + size_t(e) * width, qn, ep);
    for (int r = 0; r < n; ++r) std::fill_n(active.data() + size_t(tok[r]) * H + size_t(e) * Nh, Nh, uint8_t(1));
  }
  rope(pool, q.data(), T, H, hd, positions, s.rope_theta);
  AttentionShape shape = plain;
  shape.active = active.data();
  std::vector<float> att(size_t(T) * qn, 0.f);  // [T, H·hd]
  attention(pool, q.data(), kc, vc, slots, positions, T, shape, att.data());

  // --- h += pa_a · o_a·Wo_aᵀ, expert by expert over its tokens (W_o columns of expert a: o[slot] [d, N_h·hd])
  for (int e = 0; e < A; ++e) {
    const int n = offsets[e + 1] - offsets[e], slot = attn_slot_[l][e];
    if (n == 0 || slot < 0) continue;
    const int32_t* tok = rows.data() + offsets[e];
    gathered.resize(size_t(n) * width);
    for (int r = 0; r < n; ++r)
      std::copy_n(att.data() + size_t(tok[r]) * qn + size_t(e) * width, width, gathered.data() + size_t(r) * width);
    Epilogue ep;
    ep.row_scale = row_w.data() + offsets[e];
    ep.scatter = tok;
    ep.accumulate = true;
    linear(pool, gathered.data(), n, width, wo + bytes_of(dt, uint64_t(slot) * d * width), dt, d, h, d, ep);
  }
}

}  // namespace dsmoe
