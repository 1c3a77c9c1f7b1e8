// `kernels.*`: every kernel callable on TypedArrays, each with an `impl` option selecting the reference twin
// ('ref') or the fast path ('fast', or for linear 'gemv' / 'gemm'), and `threads` for the pool size.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "../common/cpu.h"
#include "../common/threadpool.h"
#include "../kernels/gemm_bf16.h"
#include "../kernels/kernels.h"
#include "../kernels/sampling.h"
#include "args.h"
#include "bindings.h"

namespace dsmoe {

namespace {

// A property that is set to something (undefined and null count as absent, as in JavaScript option bags).
bool present(const Napi::Object& o, const char* key) {
  if (!o.Has(key)) return false;
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

struct Options {
  std::string impl = "fast";
  int threads = 1;
};

Options options_arg(const Napi::CallbackInfo& info, size_t i) {
  Options o;
  if (i < info.Length() && info[i].IsObject()) {
    Napi::Object obj = info[i].As<Napi::Object>();
    if (present(obj, "impl")) o.impl = obj.Get("impl").ToString().Utf8Value();
    if (present(obj, "threads")) o.threads = obj.Get("threads").ToNumber().Int32Value();
  }
  if (o.threads < 1 || o.threads > 256) throw Napi::RangeError::New(info.Env(), "threads must be in [1, 256]");
  return o;
}

// Pools are kept per size: tests call kernels thousands of times.
ThreadPool* pool_for(int threads) {
  static std::mutex m;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  if (threads <= 1) return nullptr;
  std::lock_guard<std::mutex> lock(m);
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return p.get();
}

bool is_ref(const Options& o) { return o.impl == "ref"; }

size_t sz(int a, int b) { return size_t(a) * size_t(b); }

// linear(X, M, K, W, dtype, N, { bias?, impl, threads }) → Y [M, N]
Napi::Value Linear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int M = int_arg(info, 1, "M", 1), K = int_arg(info, 2, "K", 1);
  float* X = f32_arg(info, 0, sz(M, K), "X");
  if (!info[4].IsString()) throw Napi::TypeError::New(env, "dtype must be a string");
  DType t = dtype_from(env, info[4].ToString().Utf8Value());
  int N = int_arg(info, 5, "N", 1);
  check_rows_quantizable(env, t, K, "K");
  const void* W = weights_arg(info, 3, t, sz(N, K), "W");
  Options o = options_arg(info, 6);
  Epilogue ep;
  if (info.Length() > 6 && info[6].IsObject() && present(info[6].As<Napi::Object>(), "bias")) {
    Napi::Value b = info[6].As<Napi::Object>().Get("bias");
    if (!b.IsTypedArray() || b.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        b.As<Napi::TypedArray>().ElementLength() < size_t(N))
      throw Napi::TypeError::New(env, "bias must be a Float32Array of length N");
    Napi::Float32Array ba = b.As<Napi::Float32Array>();
    ep.bias = ba.Data();
  }
  Napi::Float32Array Y = new_f32(env, sz(M, N));
  ThreadPool* pool = pool_for(o.threads);
  if (is_ref(o)) linear_ref(X, M, K, W, t, N, Y.Data(), N, ep);
  else if (o.impl == "gemv") linear_gemv(pool, X, M, K, W, t, N, Y.Data(), N, ep);
  else if (o.impl == "gemm") linear_gemm(pool, X, M, K, W, t, N, Y.Data(), N, ep);
  else linear(pool, X, M, K, W, t, N, Y.Data(), N, ep);
  return Y;
}

// gemm(A, B, M, N, K, transA, transB, { out?, count?, aIndex?, bIndex?, compute?, impl, threads }) → C [count, M, N]:
// entry e of C = op(A entry aIndex[e]) · op(B entry bIndex[e]) (entry e when an index is absent), written into `out`
// when given (no fresh array, no copy), else into a new array.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int M = int_arg(info, 2, "M", 1), N = int_arg(info, 3, "N", 1), K = int_arg(info, 4, "K", 1);
  bool ta = info[5].ToBoolean(), tb = info[6].ToBoolean();
  Options o = options_arg(info, 7);
  Napi::Object opts = info.Length() > 7 && info[7].IsObject() ? info[7].As<Napi::Object>() : Napi::Object::New(env);
  // compute: 'f32' (default) or 'bf16' (operands rounded to bf16, f32 sums; needs AVX-512 BF16, gemm_bf16.h)
  std::string compute = present(opts, "compute") ? opts.Get("compute").ToString().Utf8Value() : "f32";
  if (compute != "f32" && compute != "bf16") throw Napi::TypeError::New(env, "compute must be 'f32' or 'bf16', got '" + compute + "'");
  if (compute == "bf16" && !is_ref(o) && !bf16_compute_available())
    throw Napi::Error::New(env, "compute 'bf16' needs a CPU with AVX-512 BF16 and the AVX-512 kernels (this one runs " +
                                    std::string(simd_name(simd_level())) + ")");
  GemmBatch batch;
  if (present(opts, "count")) {
    double c = opts.Get("count").ToNumber().DoubleValue();
    if (!(c >= 1 && c <= 2147483647.0 && c == double(int64_t(c)))) throw Napi::RangeError::New(env, "count must be an integer ≥ 1");
    batch.count = int(c);
  }
  // An index array of `count` entries, each in [0, entries of its operand); returns how many entries it needs.
  auto index_arg = [&](const char* key, const int32_t*& index) -> size_t {
    if (!present(opts, key)) return size_t(batch.count);
    Napi::Value v = opts.Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        v.As<Napi::TypedArray>().ElementLength() != size_t(batch.count))
      throw Napi::TypeError::New(env, std::string(key) + " must be an Int32Array of count entries");
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    int32_t most = 0;
    for (size_t e = 0; e < a.ElementLength(); ++e) {
      if (a[e] < 0) throw Napi::RangeError::New(env, std::string(key) + " has a negative entry");
      most = std::max(most, a[e]);
    }
    index = a.Data();
    return size_t(most) + 1;
  };
  size_t aEntries = index_arg("aIndex", batch.a_index), bEntries = index_arg("bIndex", batch.b_index);
  float* A = f32_arg(info, 0, aEntries * sz(M, K), "A");
  float* B = f32_arg(info, 1, bEntries * sz(K, N), "B");
  const size_t cSize = size_t(batch.count) * sz(M, N);
  Napi::Float32Array C;
  if (present(opts, "out")) {
    Napi::Value v = opts.Get("out");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        v.As<Napi::TypedArray>().ElementLength() < cSize)
      throw Napi::TypeError::New(env, "out must be a Float32Array of at least count·M·N elements");
    C = v.As<Napi::Float32Array>();
    auto overlaps = [](const float* p, size_t n, const float* q, size_t m) { return p < q + m && q < p + n; };
    if (overlaps(C.Data(), cSize, A, aEntries * sz(M, K)) || overlaps(C.Data(), cSize, B, bEntries * sz(K, N)))
      throw Napi::RangeError::New(env, "out overlaps A or B");
  } else {
    C = new_f32(env, cSize);
  }
  if (compute == "bf16") {
    if (is_ref(o)) gemm_bf16_ref(A, B, C.Data(), M, N, K, ta, tb, batch);
    else gemm_bf16(pool_for(o.threads), A, B, C.Data(), M, N, K, ta, tb, batch);
  } else if (is_ref(o)) {
    gemm_ref(A, B, C.Data(), M, N, K, ta, tb, batch);
  } else {
    gemm(pool_for(o.threads), A, B, C.Data(), M, N, K, ta, tb, batch);
  }
  return C;
}

// embedding(table, dtype, V, d, ids, opts) → [T, d]
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DType t = dtype_from(env, info[1].ToString().Utf8Value());
  if (is_quantized(t)) throw Napi::TypeError::New(env, "embedding tables are f32, bf16 or f16, not " + std::string(dtype_name(t)));
  int V = int_arg(info, 2, "V", 1), d = int_arg(info, 3, "d", 1);
  const void* table = weights_arg(info, 0, t, sz(V, d), "table");
  int32_t* idp = i32_arg(info, 4, 0, "ids");
  int T = int(info[4].As<Napi::TypedArray>().ElementLength());
  Napi::Int32Array ids = info[4].As<Napi::Int32Array>();
  for (int i = 0; i < T; ++i)
    if (ids[i] < 0 || ids[i] >= V) throw Napi::RangeError::New(env, "token id " + std::to_string(ids[i]) + " out of range");
  Options o = options_arg(info, 5);
  Napi::Float32Array out = new_f32(env, sz(T, d));
  if (is_ref(o)) embedding_ref(table, t, d, idp, T, out.Data());
  else embedding(pool_for(o.threads), table, t, d, idp, T, out.Data());
  return out;
}

// rmsnorm(x, w, T, d, eps, opts) → [T, d]
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  int T = int_arg(info, 2, "T", 1), d = int_arg(info, 3, "d", 1);
  float* x = f32_arg(info, 0, sz(T, d), "x");
  float* w = f32_arg(info, 1, size_t(d), "w");
  float eps = float(num_arg(info, 4, "eps"));
  Options o = options_arg(info, 5);
  Napi::Float32Array out = new_f32(info.Env(), sz(T, d));
  if (is_ref(o)) rmsnorm_ref(x, w, T, d, eps, out.Data());
  else rmsnorm(pool_for(o.threads), x, w, T, d, eps, out.Data());
  return out;
}

// rope(x, T, heads, hd, pos, theta, opts) → rotated copy of x [T, heads·hd]
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info, 1, "T", 1), heads = int_arg(info, 2, "heads", 1), hd = int_arg(info, 3, "hd", 2);
  if (hd % 2) throw Napi::RangeError::New(env, "hd must be even");
  float* x = f32_arg(info, 0, sz(T, heads * hd), "x");
  int32_t* pos = i32_arg(info, 4, size_t(T), "pos");
  float theta = float(num_arg(info, 5, "theta"));
  Options o = options_arg(info, 6);
  Napi::Float32Array out = new_f32(env, sz(T, heads * hd));
  std::copy_n(x, sz(T, heads * hd), out.Data());
  if (is_ref(o)) rope_ref(out.Data(), T, heads, hd, pos, theta);
  else rope(pool_for(o.threads), out.Data(), T, heads, hd, pos, theta);
  return out;
}

// attention(q, kcache, vcache, slots, pos, T, H, KV, hd, nSlots, maxContext, opts) → [T, H·hd]
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info, 5, "T", 1), H = int_arg(info, 6, "H", 1), KV = int_arg(info, 7, "KV", 1);
  int hd = int_arg(info, 8, "hd", 1), S = int_arg(info, 9, "slots", 1), C = int_arg(info, 10, "maxContext", 1);
  if (H % KV) throw Napi::RangeError::New(env, "H must be a multiple of KV");
  float* q = f32_arg(info, 0, sz(T, H * hd), "q");
  size_t cache = size_t(S) * C * KV * hd;
  float* kc = f32_arg(info, 1, cache, "kcache");
  float* vc = f32_arg(info, 2, cache, "vcache");
  int32_t* slot = i32_arg(info, 3, size_t(T), "slots");
  int32_t* pos = i32_arg(info, 4, size_t(T), "positions");
  for (int t = 0; t < T; ++t)
    if (slot[t] < 0 || slot[t] >= S || pos[t] < 0 || pos[t] >= C) throw Napi::RangeError::New(env, "slot or position out of range");
  Options o = options_arg(info, 11);
  AttentionShape s{H, KV, hd, size_t(C) * KV * hd};
  Napi::Float32Array out = new_f32(env, sz(T, H * hd));
  if (is_ref(o)) attention_ref(q, kc, vc, slot, pos, T, s, out.Data());
  else attention(pool_for(o.threads), q, kc, vc, slot, pos, T, s, out.Data());
  return out;
}

// softmax(x, T, E) → [T, E]
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  int T = int_arg(info, 1, "T", 1), E = int_arg(info, 2, "E", 1);
  float* x = f32_arg(info, 0, sz(T, E), "x");
  Napi::Float32Array out = new_f32(info.Env(), sz(T, E));
  std::copy_n(x, sz(T, E), out.Data());
  softmax_rows(out.Data(), T, E);
  return out;
}

SelectRule rule_arg(const Napi::CallbackInfo& info, size_t i, int E, std::vector<uint8_t>* allowed) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsObject()) throw Napi::TypeError::New(env, "rule must be an object");
  Napi::Object r = info[i].As<Napi::Object>();
  SelectRule rule;
  std::string mode = r.Get("mode").ToString().Utf8Value();
  if (mode == "dense") rule.mode = SelectMode::Dense;
  else if (mode == "topk") rule.mode = SelectMode::TopK;
  else if (mode == "threshold") rule.mode = SelectMode::Threshold;
  else throw Napi::TypeError::New(env, "mode must be dense, topk or threshold");
  if (present(r, "k")) rule.k = r.Get("k").ToNumber().Int32Value();
  if (present(r, "epsilon")) rule.epsilon = r.Get("epsilon").ToNumber().FloatValue();
  if (present(r, "kMax")) rule.k_max = r.Get("kMax").ToNumber().Int32Value();
  if (present(r, "renormalize")) rule.renormalize = r.Get("renormalize").ToBoolean();
  if (present(r, "allowed")) {
    Napi::Value a = r.Get("allowed");
    if (!a.IsTypedArray() || a.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        a.As<Napi::TypedArray>().ElementLength() < size_t(E))
      throw Napi::TypeError::New(env, "allowed must be a Uint8Array of length E");
    Napi::Uint8Array u = a.As<Napi::Uint8Array>();
    allowed->assign(u.Data(), u.Data() + E);
    rule.allowed = allowed->data();
  }
  return rule;
}

// select(p, T, E, rule) → { ids [T, E], weights [T, E], count [T] }
Napi::Value Select(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info, 1, "T", 1), E = int_arg(info, 2, "E", 1);
  float* p = f32_arg(info, 0, sz(T, E), "p");
  std::vector<uint8_t> allowed;
  SelectRule rule = rule_arg(info, 3, E, &allowed);
  Napi::Int32Array ids = Napi::Int32Array::New(env, sz(T, E));
  Napi::Float32Array w = new_f32(env, sz(T, E));
  Napi::Int32Array count = Napi::Int32Array::New(env, size_t(T));
  select_experts(p, T, E, rule, E, ids.Data(), w.Data(), count.Data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("ids", ids);
  out.Set("weights", w);
  out.Set("count", count);
  return out;
}

// groupByExpert(ids [T, cap], weights [T, cap], count [T], T, cap, E) → { counts, offsets, rows, rowWeight }
Napi::Value GroupByExpert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info, 3, "T", 1), cap = int_arg(info, 4, "cap", 1), E = int_arg(info, 5, "E", 1);
  int32_t* ids = i32_arg(info, 0, sz(T, cap), "ids");
  float* w = f32_arg(info, 1, sz(T, cap), "weights");
  int32_t* count = i32_arg(info, 2, size_t(T), "count");
  size_t total = 0;
  for (int t = 0; t < T; ++t) {
    if (count[t] < 0 || count[t] > cap) throw Napi::RangeError::New(env, "count out of range");
    for (int i = 0; i < count[t]; ++i)
      if (ids[size_t(t) * cap + i] < 0 || ids[size_t(t) * cap + i] >= E) throw Napi::RangeError::New(env, "expert id out of range");
    total += size_t(count[t]);
  }
  Napi::Int32Array counts = Napi::Int32Array::New(env, size_t(E));
  Napi::Int32Array offsets = Napi::Int32Array::New(env, size_t(E) + 1);
  Napi::Int32Array rows = Napi::Int32Array::New(env, total);
  Napi::Float32Array rw = new_f32(env, total);
  group_by_expert(ids, w, count, T, cap, E, counts.Data(), offsets.Data(), rows.Data(), rw.Data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("counts", counts);
  out.Set("offsets", offsets);
  out.Set("rows", rows);
  out.Set("rowWeight", rw);
  return out;
}

// swiglu(gu [n, 2I], n, I, opts) → [n, I]
Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  int n = int_arg(info, 1, "n", 1), I = int_arg(info, 2, "I", 1);
  float* gu = f32_arg(info, 0, sz(n, 2 * I), "gu");
  Options o = options_arg(info, 3);
  Napi::Float32Array out = new_f32(info.Env(), sz(n, I));
  if (is_ref(o)) swiglu_ref(gu, n, I, out.Data());
  else swiglu(gu, n, I, out.Data());
  return out;
}

// moeFfn(x [T, d], T, d, I, gateUp [K, 2I, d], down [K, d, I], dtype, E, slotOfExpert [E], offsets [E+1],
//        rows, rowWeight, opts) → y [T, d] (zeros + Σ routed expert outputs)
Napi::Value MoeFfn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info, 1, "T", 1), d = int_arg(info, 2, "d", 1), I = int_arg(info, 3, "I", 1);
  float* x = f32_arg(info, 0, sz(T, d), "x");
  DType t = dtype_from(env, info[6].ToString().Utf8Value());
  int E = int_arg(info, 7, "E", 1);
  int32_t* slot_of = i32_arg(info, 8, size_t(E), "slotOfExpert");
  int K = 0;
  for (int e = 0; e < E; ++e) K = std::max(K, slot_of[e] + 1);
  check_rows_quantizable(env, t, d, "d");
  check_rows_quantizable(env, t, I, "I");
  const void* gu = weights_arg(info, 4, t, size_t(K) * 2 * I * d, "gateUp");
  const void* dn = weights_arg(info, 5, t, size_t(K) * d * I, "down");
  int32_t* offsets = i32_arg(info, 9, size_t(E) + 1, "offsets");
  if (offsets[0] != 0) throw Napi::RangeError::New(env, "offsets[0] must be 0");
  for (int e = 0; e < E; ++e)
    if (offsets[e + 1] < offsets[e]) throw Napi::RangeError::New(env, "offsets must be non-decreasing");
  size_t total = size_t(offsets[E]);
  int32_t* rows = i32_arg(info, 10, total, "rows");
  float* rw = f32_arg(info, 11, total, "rowWeight");
  for (size_t i = 0; i < total; ++i)
    if (rows[i] < 0 || rows[i] >= T) throw Napi::RangeError::New(env, "row out of range");
  Options o = options_arg(info, 12);
  ExpertWeights w{gu, dn, t, d, I, slot_of};
  Napi::Float32Array y = new_f32(env, sz(T, d));
  if (is_ref(o)) moe_ffn_ref(x, T, w, E, offsets, rows, rw, y.Data());
  else moe_ffn(pool_for(o.threads), x, T, w, E, offsets, rows, rw, y.Data());
  return y;
}

// combine(out [R, d], rows [R], T, d, opts) → y [T, d] = per-token sums of the rows
Napi::Value Combine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info, 2, "T", 1), d = int_arg(info, 3, "d", 1);
  int32_t* rows = i32_arg(info, 1, 0, "rows");
  int R = int(info[1].As<Napi::TypedArray>().ElementLength());
  float* out = f32_arg(info, 0, sz(R, d), "out");
  for (int r = 0; r < R; ++r)
    if (rows[r] < 0 || rows[r] >= T) throw Napi::RangeError::New(env, "row out of range");
  Options o = options_arg(info, 4);
  Napi::Float32Array y = new_f32(env, sz(T, d));
  if (is_ref(o)) combine_ref(out, rows, R, d, y.Data());
  else combine(pool_for(o.threads), out, rows, R, d, y.Data());
  return y;
}

// A safe integer (|v| ≤ 2^53 − 1) as JavaScript passes seeds and counters; exact in a double.
int64_t safe_int_arg(const Napi::CallbackInfo& info, size_t i, const char* what, bool non_negative) {
  const double v = num_arg(info, i, what);
  if (!(std::fabs(v) <= 9007199254740991.0) || v != std::trunc(v) || (non_negative && v < 0))
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be " + (non_negative ? "a non-negative" : "an") +
                                                " integer ≤ 2^53 − 1 in magnitude");
  return int64_t(v);
}

// sample(logits [V], temperature, topP, seed, counter, opts) → token id: the sampler contract (docs/design.md §10),
// the draw u(seed, counter) made inside the kernel. The seed maps to uint64 by two's complement, as in TypeScript.
Napi::Value Sample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray a = typed_array(info, 0, napi_float32_array, "Float32Array", 1, "logits");
  const float* logits = f32_arg(info, 0, 1, "logits");
  const int V = int(a.ElementLength());
  const float temp = float(num_arg(info, 1, "temperature")), top_p = float(num_arg(info, 2, "topP"));
  if (!std::isfinite(temp)) throw Napi::RangeError::New(env, "temperature must be a finite number");
  if (!(top_p > 0 && top_p <= 1)) throw Napi::RangeError::New(env, "topP must be in (0, 1]");
  const uint64_t seed = uint64_t(safe_int_arg(info, 3, "seed", false));
  const uint64_t counter = uint64_t(safe_int_arg(info, 4, "counter", true));
  bool finite = false;
  for (int i = 0; i < V; ++i) {
    if (std::isnan(logits[i]) || logits[i] == INFINITY)
      throw Napi::RangeError::New(env, "logits[" + std::to_string(i) + "] must be finite or -Infinity");
    finite = finite || logits[i] != -INFINITY;
  }
  if (!finite) throw Napi::RangeError::New(env, "logits are all -Infinity: no token can be sampled");
  Options o = options_arg(info, 5);
  const int id = is_ref(o) ? sample_token_ref(logits, V, temp, top_p, seed, counter)
                           : sample_token(logits, V, temp, top_p, seed, counter);
  return Napi::Number::New(env, id);
}

// quantize(x, K, dtype) → Uint8Array of blocks: quantize_row over each row of K weights (x holds whole rows).
// For tests: the TypeScript quantizer (src/plan/quantize.ts) must write the same bytes.
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int K = int_arg(info, 1, "K", 1);
  if (!info[2].IsString()) throw Napi::TypeError::New(env, "dtype must be a string");
  DType t = dtype_from(env, info[2].ToString().Utf8Value());
  if (!is_quantized(t)) throw Napi::TypeError::New(env, "quantize needs q8_0, q4_0, q3_a or q2_a, got " + std::string(dtype_name(t)));
  check_rows_quantizable(env, t, K, "K");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "x must be a Float32Array");
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  if (x.ElementLength() % size_t(K) != 0) throw Napi::RangeError::New(env, "x must hold whole rows of K values");
  const size_t rows = x.ElementLength() / size_t(K);
  Napi::Uint8Array out = Napi::Uint8Array::New(env, rows * bytes_of(t, uint64_t(K)));
  for (size_t r = 0; r < rows; ++r) quantize_row(x.Data() + r * K, K, t, out.Data() + r * bytes_of(t, uint64_t(K)));
  return out;
}

}  // namespace

Napi::Object kernel_bindings(Napi::Env env) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("linear", Napi::Function::New(env, Linear));
  k.Set("gemm", Napi::Function::New(env, Gemm));
  k.Set("embedding", Napi::Function::New(env, Embedding));
  k.Set("rmsnorm", Napi::Function::New(env, RmsNorm));
  k.Set("rope", Napi::Function::New(env, Rope));
  k.Set("attention", Napi::Function::New(env, Attention));
  k.Set("softmax", Napi::Function::New(env, Softmax));
  k.Set("select", Napi::Function::New(env, Select));
  k.Set("groupByExpert", Napi::Function::New(env, GroupByExpert));
  k.Set("swiglu", Napi::Function::New(env, Swiglu));
  k.Set("moeFfn", Napi::Function::New(env, MoeFfn));
  k.Set("combine", Napi::Function::New(env, Combine));
  k.Set("sample", Napi::Function::New(env, Sample));
  k.Set("quantize", Napi::Function::New(env, Quantize));
  add_training_kernel_bindings(k);
  return k;
}

ThreadPool* shared_pool(int threads) { return pool_for(threads); }

}  // namespace dsmoe
