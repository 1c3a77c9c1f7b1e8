#include "native_context.h"

#include <string>
#include <vector>

#include "args.h"

namespace dsmoe {

Napi::FunctionReference NativeContext::constructor;

namespace {

// Runs Session::forward on a libuv worker thread; resolves with the logits [R, V].
class EvalWorker : public Napi::AsyncWorker {
 public:
  EvalWorker(Napi::Env env, NativeContext* owner, Napi::Object owner_js, std::shared_ptr<Session> session)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner), session_(std::move(session)) {
    owner_ref_ = Napi::Persistent(owner_js);  // keeps the context alive until the promise settles
  }

  std::vector<int32_t> tokens, slots, positions, rows;
  RoutingOverride routing;
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      logits_ = session_->forward(tokens, slots, positions, rows, routing);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    owner_->busy = false;
    Napi::Float32Array out = Napi::Float32Array::New(Env(), logits_.size());
    std::copy(logits_.begin(), logits_.end(), out.Data());
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override {
    owner_->busy = false;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  NativeContext* owner_;
  Napi::ObjectReference owner_ref_;
  std::shared_ptr<Session> session_;
  std::vector<float> logits_;
};

std::vector<int32_t> copy_i32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  int32_t* p = i32_arg(info, i, 0, what);
  size_t n = info[i].As<Napi::TypedArray>().ElementLength();
  return std::vector<int32_t>(p, p + n);
}

}  // namespace

Napi::Function NativeContext::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeContext",
                                 {InstanceMethod("evaluate", &NativeContext::Evaluate),
                                  InstanceMethod("clearSlot", &NativeContext::ClearSlot),
                                  InstanceMethod("slotLength", &NativeContext::SlotLength),
                                  InstanceMethod("routingStats", &NativeContext::RoutingStats),
                                  InstanceMethod("resetStats", &NativeContext::ResetStats),
                                  InstanceMethod("earlyRouting", &NativeContext::EarlyRouting)});
  constructor = Napi::Persistent(f);
  constructor.SuppressDestruct();
  return f;
}

NativeContext::NativeContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeContext>(info) {}

void NativeContext::attach(std::shared_ptr<Engine> engine, int slots, int max_context) {
  session_ = engine->new_session(slots, max_context);
  engine_ = std::move(engine);
}

// evaluate(tokens, slots, positions, outputRows, routing?) → Promise<Float32Array>
Napi::Value NativeContext::Evaluate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!session_) throw Napi::Error::New(env, "this context was not created by NativeModel.newContext");
  auto worker = new EvalWorker(env, this, info.This().As<Napi::Object>(), session_);
  try {
    worker->tokens = copy_i32(info, 0, "tokens");
    worker->slots = copy_i32(info, 1, "slots");
    worker->positions = copy_i32(info, 2, "positions");
    worker->rows = copy_i32(info, 3, "outputRows");
    if (info.Length() > 4 && info[4].IsObject()) {
      Napi::Object r = info[4].As<Napi::Object>();
      std::string mode = r.Get("mode").ToString().Utf8Value();
      worker->routing.active = true;
      if (mode == "dense") worker->routing.mode = SelectMode::Dense;
      else if (mode == "topk") worker->routing.mode = SelectMode::TopK;
      else if (mode == "threshold") worker->routing.mode = SelectMode::Threshold;
      else throw Napi::TypeError::New(env, "routing.mode must be dense, topk or threshold");
      if (worker->routing.mode == SelectMode::TopK) {
        if (!r.Get("k").IsNumber() || r.Get("k").As<Napi::Number>().Int32Value() < 1)
          throw Napi::TypeError::New(env, "routing.k must be an integer ≥ 1");
        worker->routing.k = r.Get("k").As<Napi::Number>().Int32Value();
      }
      if (worker->routing.mode == SelectMode::Threshold) {
        if (!r.Get("epsilon").IsNumber()) throw Napi::TypeError::New(env, "routing.epsilon must be a number");
        worker->routing.epsilon = r.Get("epsilon").As<Napi::Number>().FloatValue();
      }
    }
  } catch (...) {
    delete worker;
    throw;
  }
  if (busy.exchange(true)) {
    delete worker;
    throw Napi::Error::New(env, "this context is already evaluating a batch; await the previous evaluate() first");
  }
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value NativeContext::ClearSlot(const Napi::CallbackInfo& info) {
  int slot = int_arg(info, 0, "slot");
  if (!session_ || slot >= session_->slots()) throw Napi::RangeError::New(info.Env(), "slot out of range");
  if (busy) throw Napi::Error::New(info.Env(), "cannot clear a slot while an evaluation runs");
  session_->clear(slot);
  return info.Env().Undefined();
}

Napi::Value NativeContext::SlotLength(const Napi::CallbackInfo& info) {
  int slot = int_arg(info, 0, "slot");
  if (!session_ || slot >= session_->slots()) throw Napi::RangeError::New(info.Env(), "slot out of range");
  return Napi::Number::New(info.Env(), session_->length(slot));
}

Napi::Value NativeContext::RoutingStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "context has no model");
  std::vector<std::vector<int64_t>> counts;
  int64_t tokens = 0;
  engine_->stats(&counts, &tokens);
  Napi::Array per_layer = Napi::Array::New(env, counts.size());
  double selections = 0;
  for (size_t l = 0; l < counts.size(); ++l) {
    Napi::Int32Array a = Napi::Int32Array::New(env, counts[l].size());
    for (size_t e = 0; e < counts[l].size(); ++e) {
      a[e] = int32_t(counts[l][e]);
      selections += double(counts[l][e]);
    }
    per_layer.Set(uint32_t(l), a);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("tokens", Napi::Number::New(env, double(tokens)));
  o.Set("expertCounts", per_layer);
  double denom = double(tokens) * double(counts.empty() ? 1 : counts.size());
  o.Set("activeExperts", Napi::Number::New(env, tokens ? selections / denom : 0));
  // MoA models: the same over the attention experts (plain layers have none, and are left out of the mean).
  std::vector<std::vector<int64_t>> attention = engine_->attention_stats();
  bool moa = false;
  for (const auto& row : attention) moa = moa || !row.empty();
  if (moa) {
    Napi::Array attn_layers = Napi::Array::New(env, attention.size());
    double attn_selections = 0, attn_layers_counted = 0;
    for (size_t l = 0; l < attention.size(); ++l) {
      Napi::Int32Array a = Napi::Int32Array::New(env, attention[l].size());
      for (size_t e = 0; e < attention[l].size(); ++e) {
        a[e] = int32_t(attention[l][e]);
        attn_selections += double(attention[l][e]);
      }
      attn_layers_counted += attention[l].empty() ? 0 : 1;
      attn_layers.Set(uint32_t(l), a);
    }
    o.Set("attentionExpertCounts", attn_layers);
    o.Set("activeAttentionExperts", Napi::Number::New(env, tokens ? attn_selections / (double(tokens) * attn_layers_counted) : 0));
  }
  return o;
}

// earlyRouting() → [{ layer, experts: Int32Array, count: Int32Array [T], ids: Int32Array [T·E], weights: Float32Array [T·E] }]
Napi::Value NativeContext::EarlyRouting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "context has no model");
  if (busy) throw Napi::Error::New(env, "the early routing is read after evaluate() resolves, not while it runs");
  std::vector<dsmoe::EarlyRouting> early = engine_->last_early_routing();
  Napi::Array out = Napi::Array::New(env, early.size());
  auto i32 = [&](const std::vector<int32_t>& v) {
    Napi::Int32Array a = Napi::Int32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  };
  for (size_t i = 0; i < early.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("layer", Napi::Number::New(env, early[i].layer));
    o.Set("experts", i32(early[i].experts));
    o.Set("count", i32(early[i].count));
    o.Set("ids", i32(early[i].ids));
    Napi::Float32Array w = Napi::Float32Array::New(env, early[i].weights.size());
    std::copy(early[i].weights.begin(), early[i].weights.end(), w.Data());
    o.Set("weights", w);
    out.Set(uint32_t(i), o);
  }
  return out;
}

Napi::Value NativeContext::ResetStats(const Napi::CallbackInfo& info) {
  if (engine_) engine_->reset_stats();
  return info.Env().Undefined();
}

}  // namespace dsmoe
