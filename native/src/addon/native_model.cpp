#include "native_model.h"

#include <stdexcept>
#include <string>

#include "args.h"
#include "native_context.h"

namespace dsmoe {

namespace {

// Property readers that turn a malformed spec into a TypeError naming the field.
Napi::Object obj_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw Napi::TypeError::New(env, where + "." + key + " must be an object");
  return v.As<Napi::Object>();
}

double num_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int int_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  double v = num_field(env, o, key, where);
  if (v != double(int64_t(v)) || v < -2147483648.0 || v > 2147483647.0)
    throw Napi::TypeError::New(env, where + "." + key + " must be an integer");
  return int(v);
}

std::string str_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(env, where + "." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

TensorRef tensor_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Object t = obj_field(env, o, key, where);
  std::string at = where + "." + key;
  TensorRef r;
  r.name = t.Get("name").IsString() ? t.Get("name").As<Napi::String>().Utf8Value() : at;
  double off = num_field(env, t, "offset", at);
  if (!(off >= 0) || off > 9007199254740991.0 || off != double(uint64_t(off)))
    throw Napi::TypeError::New(env, at + ".offset must be a non-negative integer");
  r.offset = uint64_t(off);
  r.dtype = dtype_from(env, str_field(env, t, "dtype", at));
  Napi::Value shape = t.Get("shape");
  if (!shape.IsArray()) throw Napi::TypeError::New(env, at + ".shape must be an array");
  Napi::Array a = shape.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, at + ".shape must hold numbers");
    r.shape.push_back(int64_t(v.As<Napi::Number>().DoubleValue()));
  }
  return r;
}

SelectMode mode_from(Napi::Env env, const std::string& m) {
  if (m == "dense") return SelectMode::Dense;
  if (m == "topk") return SelectMode::TopK;
  if (m == "threshold") return SelectMode::Threshold;
  throw Napi::TypeError::New(env, "select mode must be dense, topk or threshold, got " + m);
}

ModelSpec parse_spec(Napi::Env env, const Napi::Object& js) {
  ModelSpec s;
  s.weights_path = str_field(env, js, "weightsPath", "spec");
  s.dtype = dtype_from(env, str_field(env, js, "dtype", "spec"));
  // Mixed precision: the routed experts' and attention projections' storage (default: the plan dtype).
  s.expert_dtype = js.Get("expertDtype").IsString() ? dtype_from(env, str_field(env, js, "expertDtype", "spec")) : s.dtype;
  s.attn_dtype = js.Get("attnDtype").IsString() ? dtype_from(env, str_field(env, js, "attnDtype", "spec")) : s.dtype;
  if (is_quantized(s.dtype))
    throw Napi::TypeError::New(env, "spec.dtype (embedding, LM head, shared expert) must be f32, bf16 or f16, got " +
                                        std::string(dtype_name(s.dtype)));
  Napi::Object c = obj_field(env, js, "config", "spec");
  s.vocab = int_field(env, c, "vocab", "spec.config");
  s.d = int_field(env, c, "hidden", "spec.config");
  s.layers = int_field(env, c, "layers", "spec.config");
  s.heads = int_field(env, c, "heads", "spec.config");
  s.kv_heads = int_field(env, c, "kvHeads", "spec.config");
  s.experts = int_field(env, c, "experts", "spec.config");
  s.rms_eps = float(num_field(env, c, "rmsEps", "spec.config"));
  s.rope_theta = float(num_field(env, c, "ropeTheta", "spec.config"));
  s.threads = js.Get("threads").IsNumber() ? int_field(env, js, "threads", "spec") : 0;
  if (s.threads < 0 || s.threads > 256) throw Napi::RangeError::New(env, "spec.threads must be in [0, 256]");
  s.embed = tensor_field(env, js, "embed", "spec");
  s.norm = tensor_field(env, js, "norm", "spec");
  s.lm_head = tensor_field(env, js, "lmHead", "spec");
  Napi::Value layers = js.Get("layers");
  if (!layers.IsArray()) throw Napi::TypeError::New(env, "spec.layers must be an array");
  Napi::Array la = layers.As<Napi::Array>();
  for (uint32_t l = 0; l < la.Length(); ++l) {
    std::string at = "spec.layers[" + std::to_string(l) + "]";
    if (!la.Get(l).IsObject()) throw Napi::TypeError::New(env, at + " must be an object");
    Napi::Object L = la.Get(l).As<Napi::Object>();
    LayerSpec ls;
    ls.attn_norm = tensor_field(env, L, "attnNorm", at);
    ls.qkv = tensor_field(env, L, "qkv", at);
    ls.qkv_bias = tensor_field(env, L, "qkvBias", at);
    ls.o = tensor_field(env, L, "o", at);
    ls.mlp_norm = tensor_field(env, L, "mlpNorm", at);
    ls.router = tensor_field(env, L, "router", at);
    ls.gate_up = tensor_field(env, L, "gateUp", at);
    ls.down = tensor_field(env, L, "down", at);
    ls.intermediate = int_field(env, L, "intermediate", at);
    ls.pool = L.Get("pool").IsNumber() ? int_field(env, L, "pool", at) : int(l);
    ls.pre_gate = L.Get("preGate").ToBoolean();
    Napi::Object sel = obj_field(env, L, "select", at);
    ls.select.mode = mode_from(env, str_field(env, sel, "mode", at + ".select"));
    ls.select.k = sel.Get("k").IsNumber() ? int_field(env, sel, "k", at + ".select") : 1;
    ls.select.epsilon = sel.Get("epsilon").IsNumber() ? float(num_field(env, sel, "epsilon", at + ".select")) : 0.f;
    ls.select.k_max = sel.Get("kMax").IsNumber() ? int_field(env, sel, "kMax", at + ".select") : 0;
    ls.select.renormalize = sel.Get("renormalize").ToBoolean();
    Napi::Value kept = L.Get("kept");
    if (!kept.IsArray()) throw Napi::TypeError::New(env, at + ".kept must be an array");
    Napi::Array ka = kept.As<Napi::Array>();
    for (uint32_t i = 0; i < ka.Length(); ++i) {
      if (!ka.Get(i).IsNumber()) throw Napi::TypeError::New(env, at + ".kept must hold numbers");
      ls.kept.push_back(ka.Get(i).As<Napi::Number>().Int32Value());
    }
    if (L.Get("attention").IsObject()) {  // MoA (design.md §12)
      Napi::Object at_ = L.Get("attention").As<Napi::Object>();
      const std::string where = at + ".attention";
      ls.attn_experts = int_field(env, at_, "experts", where);
      ls.heads_per_expert = int_field(env, at_, "headsPerExpert", where);
      ls.attn_router = tensor_field(env, at_, "router", where);
      Napi::Object asel = obj_field(env, at_, "select", where);
      const std::string amode = str_field(env, asel, "mode", where + ".select");
      ls.attn_select.mode = amode == "all" ? SelectMode::Dense : mode_from(env, amode);
      ls.attn_select.k = int_field(env, asel, "k", where + ".select");
      ls.attn_select.epsilon = float(num_field(env, asel, "epsilon", where + ".select"));
      ls.attn_select.k_max = int_field(env, asel, "kMax", where + ".select");
      Napi::Value akept = at_.Get("kept");
      if (!akept.IsArray()) throw Napi::TypeError::New(env, where + ".kept must be an array");
      Napi::Array aka = akept.As<Napi::Array>();
      for (uint32_t i = 0; i < aka.Length(); ++i) {
        if (!aka.Get(i).IsNumber()) throw Napi::TypeError::New(env, where + ".kept must hold numbers");
        ls.attn_kept.push_back(aka.Get(i).As<Napi::Number>().Int32Value());
      }
    }
    if (L.Get("shared").IsObject()) {
      Napi::Object sh = L.Get("shared").As<Napi::Object>();
      ls.shared_intermediate = int_field(env, sh, "intermediate", at + ".shared");
      if (ls.shared_intermediate > 0) {
        ls.shared_gate_up = tensor_field(env, sh, "gateUp", at + ".shared");
        ls.shared_down = tensor_field(env, sh, "down", at + ".shared");
        ls.shared_gate = tensor_field(env, sh, "gate", at + ".shared");
      }
    }
    s.layer.push_back(std::move(ls));
  }
  Napi::Value cache = js.Get("expertCache");
  if (cache.IsObject()) {
    Napi::Object c = cache.As<Napi::Object>();
    s.expert_cache.slots = int_field(env, c, "slots", "spec.expertCache");
    if (s.expert_cache.slots < 1) throw Napi::RangeError::New(env, "spec.expertCache.slots must be ≥ 1");
    if (c.Get("ioThreads").IsNumber()) s.expert_cache.io_threads = int_field(env, c, "ioThreads", "spec.expertCache");
    if (s.expert_cache.io_threads < 1 || s.expert_cache.io_threads > 64)
      throw Napi::RangeError::New(env, "spec.expertCache.ioThreads must be in [1, 64]");
    s.expert_cache.prefetch = c.Get("prefetch").IsBoolean() ? c.Get("prefetch").As<Napi::Boolean>().Value() : true;
    if (c.Get("prefetchMargin").IsNumber())
      s.expert_cache.prefetch_margin = int_field(env, c, "prefetchMargin", "spec.expertCache");
    if (s.expert_cache.prefetch_margin < 0 || s.expert_cache.prefetch_margin > s.experts)
      throw Napi::RangeError::New(env, "spec.expertCache.prefetchMargin must be in [0, experts]");
    s.expert_cache.reload_every_step = c.Get("reloadEveryStep").ToBoolean();
    s.expert_cache.direct_io = c.Get("directIo").ToBoolean();
  }
  s.profile_ops = js.Get("profileOps").ToBoolean();
  if (js.Get("residency").IsString()) {
    try {
      s.residency = residency_from(js.Get("residency").As<Napi::String>().Utf8Value());
    } catch (const std::exception& e) {
      throw Napi::TypeError::New(env, std::string("spec.") + e.what());
    }
  }
  return s;
}

}  // namespace

Napi::Function NativeModel::Init(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {InstanceMethod("newContext", &NativeModel::NewContext),
                      InstanceMethod("dispose", &NativeModel::Dispose), InstanceMethod("info", &NativeModel::Info),
                      InstanceMethod("expertCacheStats", &NativeModel::ExpertCacheStats),
                      InstanceMethod("opTimes", &NativeModel::OpTimes)});
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "NativeModel needs a spec object");
  Napi::Object js = info[0].As<Napi::Object>();
  ModelSpec spec = parse_spec(env, js);
  std::string device = js.Get("device").IsString() ? js.Get("device").As<Napi::String>().Utf8Value() : "cpu";
  if (device != "cpu" && device != "cuda") throw Napi::TypeError::New(env, "spec.device must be \"cpu\" or \"cuda\", got " + device);
  try {
    engine_ = make_engine(device, std::move(spec));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

std::shared_ptr<Engine> NativeModel::engine(Napi::Env env) const {
  if (!engine_) throw Napi::Error::New(env, "the model was disposed");
  return engine_;
}

Napi::Value NativeModel::NewContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Engine> m = engine(env);
  int slots = int_arg(info, 0, "slots", 1), max_context = int_arg(info, 1, "maxContext", 1);
  Napi::Object ctx = NativeContext::constructor.New({});
  try {
    NativeContext::Unwrap(ctx)->attach(m, slots, max_context);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return ctx;
}

Napi::Value NativeModel::Dispose(const Napi::CallbackInfo& info) {
  engine_.reset();  // contexts still holding the engine keep the weights until they are collected
  return info.Env().Undefined();
}

Napi::Value NativeModel::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Engine> m = engine(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", m->threads());
  o.Set("dtype", dtype_name(m->spec().dtype));
  o.Set("expertDtype", dtype_name(m->spec().expert_dtype));
  o.Set("attnDtype", dtype_name(m->spec().attn_dtype));
  o.Set("device", m->device());
  o.Set("deviceName", m->device_name());
  o.Set("residency", m->residency());
  o.Set("residencyWarning", m->residency_warning());
  return o;
}

// expertCacheStats() → counters since the model was made, or null when the experts are resident.
Napi::Value NativeModel::ExpertCacheStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Engine> m = engine(env);
  dsmoe::ExpertCacheStats st;
  if (!m->cache_stats(&st)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("slots", m->spec().expert_cache.slots);
  o.Set("hits", double(st.hits));
  o.Set("misses", double(st.misses));
  o.Set("loads", double(st.loads));
  o.Set("bytesRead", double(st.bytes_read));
  o.Set("stallSeconds", st.stall_seconds);
  o.Set("prefetches", double(st.prefetches));
  o.Set("predicted", double(st.predicted));
  o.Set("predictedUsed", double(st.predicted_used));
  o.Set("demandedPredicted", double(st.demanded_predicted));
  o.Set("inFlight", double(st.in_flight));
  return o;
}

// opTimes() → { forwards, seconds: { embedding, norm, … } } summed since the model was made, or null unless the
// spec had profileOps (and on CUDA, which does not time its phases).
Napi::Value NativeModel::OpTimes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Engine> m = engine(env);
  dsmoe::OpTimes t;
  if (!m->op_times(&t)) return env.Null();
  Napi::Object seconds = Napi::Object::New(env);
  for (int i = 0; i < int(Op::Count); ++i) seconds.Set(op_name(Op(i)), t.seconds[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("forwards", double(t.forwards));
  o.Set("seconds", seconds);
  return o;
}

}  // namespace dsmoe
