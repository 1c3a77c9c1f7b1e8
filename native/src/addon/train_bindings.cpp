// `kernels.*` for the tfjs trainer: the optimizer step (adamw.h: adamw in place, sumSquares) and the fused
// element-wise kernels with their gradients (train_elementwise.h: routedSwiglu, softmaxXent, rmsnormTrain / rmsnormBackward). Each takes the same
// { impl: 'ref' | 'fast', threads } options as the other kernels; outputs go into `out`-style arrays when given.
#include <cmath>
#include <string>

#include "../kernels/adamw.h"
#include "../kernels/kernels.h"
#include "../kernels/train_elementwise.h"
#include "args.h"
#include "bindings.h"

namespace dsmoe {

namespace {

Napi::Float32Array f32_array(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Float32Array");
  return info[i].As<Napi::Float32Array>();
}

struct Opts {
  Napi::Object o;
  bool ref = false;
  int threads = 1;
};

Opts opts_arg(const Napi::CallbackInfo& info, size_t i) {
  Opts r{i < info.Length() && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(info.Env())};
  if (r.o.Has("impl") && r.o.Get("impl").IsString()) r.ref = r.o.Get("impl").ToString().Utf8Value() == "ref";
  if (r.o.Has("threads") && r.o.Get("threads").IsNumber()) r.threads = r.o.Get("threads").ToNumber().Int32Value();
  if (r.threads < 1 || r.threads > 256) throw Napi::RangeError::New(info.Env(), "threads must be in [1, 256]");
  return r;
}

float finite_field(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) {
    if (std::isnan(fallback)) throw Napi::TypeError::New(o.Env(), std::string(key) + " is required");
    return float(fallback);
  }
  double v = o.Get(key).ToNumber().DoubleValue();
  if (!std::isfinite(v)) throw Napi::RangeError::New(o.Env(), std::string(key) + " must be a finite number");
  return float(v);
}

// adamw(param, grad, m, v, { lr, beta1, beta2, eps, weightDecay, step, gradScale?, impl, threads }): updates
// param, m and v in place (one AdamW step t = step of adamw.h); grad is read only.
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array param = f32_array(info, 0, "param"), grad = f32_array(info, 1, "grad"), m = f32_array(info, 2, "m"),
                     v = f32_array(info, 3, "v");
  const size_t n = param.ElementLength();
  if (grad.ElementLength() != n || m.ElementLength() != n || v.ElementLength() != n)
    throw Napi::RangeError::New(env, "param, grad, m and v must have the same length");
  auto overlaps = [](const float* p, const float* q, size_t k) { return k > 0 && p < q + k && q < p + k; };
  const float* writes[3] = {param.Data(), m.Data(), v.Data()};
  for (int a = 0; a < 3; ++a) {
    if (overlaps(writes[a], grad.Data(), n)) throw Napi::RangeError::New(env, "grad overlaps param, m or v");
    for (int b = a + 1; b < 3; ++b)
      if (overlaps(writes[a], writes[b], n)) throw Napi::RangeError::New(env, "param, m and v must not overlap");
  }
  Opts o = opts_arg(info, 4);
  const double step = o.o.Has("step") ? o.o.Get("step").ToNumber().DoubleValue() : 0;
  if (!(step >= 1 && step == std::floor(step))) throw Napi::RangeError::New(env, "step must be an integer ≥ 1");
  AdamWStep s;
  s.lr = finite_field(o.o, "lr", NAN);
  s.beta1 = finite_field(o.o, "beta1", NAN);
  s.beta2 = finite_field(o.o, "beta2", NAN);
  s.eps = finite_field(o.o, "eps", NAN);
  s.weight_decay = finite_field(o.o, "weightDecay", 0);
  s.grad_scale = finite_field(o.o, "gradScale", 1);
  const double b1 = o.o.Get("beta1").ToNumber().DoubleValue(), b2 = o.o.Get("beta2").ToNumber().DoubleValue();  // present: checked above
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw Napi::RangeError::New(env, "beta1 and beta2 must be in [0, 1)");
  s.beta1 = float(b1);
  s.beta2 = float(b2);
  // The bias corrections from the doubles, as src/train/adamw.ts computes them.
  s.correction1 = float(1 - std::pow(b1, step));
  s.correction2 = float(1 - std::pow(b2, step));
  if (o.ref) adamw_ref(param.Data(), grad.Data(), m.Data(), v.Data(), n, s);
  else adamw(shared_pool(o.threads), param.Data(), grad.Data(), m.Data(), v.Data(), n, s);
  return env.Undefined();
}

// sumSquares(x, { impl, threads }) → Σ x² (double)
Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Napi::Float32Array x = f32_array(info, 0, "x");
  Opts o = opts_arg(info, 1);
  const double total = o.ref ? sum_squares_ref(x.Data(), x.ElementLength()) : sum_squares(shared_pool(o.threads), x.Data(), x.ElementLength());
  return Napi::Number::New(info.Env(), total);
}

// A Float32Array of exactly `len` elements from info[i].
float* f32_exact(const Napi::CallbackInfo& info, size_t i, size_t len, const char* what) {
  Napi::Float32Array a = f32_array(info, i, what);
  if (a.ElementLength() != len) throw Napi::RangeError::New(info.Env(), std::string(what) + " must have " + std::to_string(len) + " elements");
  return a.Data();
}

// opts[key] when given (a Float32Array of exactly len elements), else a new array.
Napi::Float32Array out_arg(const Napi::Object& opts, const char* key, size_t len) {
  Napi::Env env = opts.Env();
  if (!opts.Has(key) || opts.Get(key).IsUndefined()) return Napi::Float32Array::New(env, len);
  Napi::Value v = opts.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || v.As<Napi::TypedArray>().ElementLength() != len)
    throw Napi::TypeError::New(env, std::string(key) + " must be a Float32Array of " + std::to_string(len) + " elements");
  return v.As<Napi::Float32Array>();
}

size_t count_of(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 1 && v <= 2147483647.0 && v == std::floor(v))) throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer ≥ 1");
  return size_t(v);
}

// routedSwiglu(gate, up, w, N, E, I, { out?, impl, threads }) → out [N, E·I]
Napi::Value RoutedSwiglu(const Napi::CallbackInfo& info) {
  const size_t N = count_of(info, 3, "N"), E = count_of(info, 4, "E"), I = count_of(info, 5, "I");
  const float* gate = f32_exact(info, 0, N * E * I, "gate");
  const float* up = f32_exact(info, 1, N * E * I, "up");
  const float* w = f32_exact(info, 2, N * E, "w");
  Opts o = opts_arg(info, 6);
  Napi::Float32Array out = out_arg(o.o, "out", N * E * I);
  if (o.ref) routed_swiglu_ref(gate, up, w, int(N), int(E), int(I), out.Data());
  else routed_swiglu(shared_pool(o.threads), gate, up, w, int(N), int(E), int(I), out.Data());
  return out;
}

// routedSwigluBackward(gate, up, w, dy, N, E, I, { dgate?, dup?, dw?, impl, threads }) → { dgate, dup, dw }
Napi::Value RoutedSwigluBackward(const Napi::CallbackInfo& info) {
  const size_t N = count_of(info, 4, "N"), E = count_of(info, 5, "E"), I = count_of(info, 6, "I");
  const float* gate = f32_exact(info, 0, N * E * I, "gate");
  const float* up = f32_exact(info, 1, N * E * I, "up");
  const float* w = f32_exact(info, 2, N * E, "w");
  const float* dy = f32_exact(info, 3, N * E * I, "dy");
  Opts o = opts_arg(info, 7);
  Napi::Float32Array dgate = out_arg(o.o, "dgate", N * E * I), dup = out_arg(o.o, "dup", N * E * I), dw = out_arg(o.o, "dw", N * E);
  if (o.ref) routed_swiglu_backward_ref(gate, up, w, dy, int(N), int(E), int(I), dgate.Data(), dup.Data(), dw.Data());
  else routed_swiglu_backward(shared_pool(o.threads), gate, up, w, dy, int(N), int(E), int(I), dgate.Data(), dup.Data(), dw.Data());
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("dgate", dgate);
  r.Set("dup", dup);
  r.Set("dw", dw);
  return r;
}

// Targets: an Int32Array of N ids in [0, V) (checked here: the kernels index rows with them).
const int32_t* targets_arg(const Napi::CallbackInfo& info, size_t i, size_t N, size_t V) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[i].As<Napi::TypedArray>().ElementLength() != N)
    throw Napi::TypeError::New(info.Env(), "targets must be an Int32Array of N ids");
  Napi::Int32Array t = info[i].As<Napi::Int32Array>();
  for (size_t n = 0; n < N; ++n)
    if (t[n] < 0 || size_t(t[n]) >= V)
      throw Napi::RangeError::New(info.Env(), "targets[" + std::to_string(n) + "] = " + std::to_string(t[n]) + " is outside [0, V)");
  return t.Data();
}

// softmaxXent(logits, targets, N, V, { out?, impl, threads }) → loss [N]
Napi::Value SoftmaxXent(const Napi::CallbackInfo& info) {
  const size_t N = count_of(info, 2, "N"), V = count_of(info, 3, "V");
  const float* logits = f32_exact(info, 0, N * V, "logits");
  const int32_t* targets = targets_arg(info, 1, N, V);
  Opts o = opts_arg(info, 4);
  Napi::Float32Array loss = out_arg(o.o, "out", N);
  if (o.ref) softmax_xent_ref(logits, targets, int(N), int(V), loss.Data());
  else softmax_xent(shared_pool(o.threads), logits, targets, int(N), int(V), loss.Data());
  return loss;
}

// softmaxXentBackward(logits, targets, dloss, N, V, { out?, impl, threads }) → dlogits [N, V]
Napi::Value SoftmaxXentBackward(const Napi::CallbackInfo& info) {
  const size_t N = count_of(info, 3, "N"), V = count_of(info, 4, "V");
  const float* logits = f32_exact(info, 0, N * V, "logits");
  const int32_t* targets = targets_arg(info, 1, N, V);
  const float* dloss = f32_exact(info, 2, N, "dloss");
  Opts o = opts_arg(info, 5);
  Napi::Float32Array dlogits = out_arg(o.o, "out", N * V);
  if (o.ref) softmax_xent_backward_ref(logits, targets, dloss, int(N), int(V), dlogits.Data());
  else softmax_xent_backward(shared_pool(o.threads), logits, targets, dloss, int(N), int(V), dlogits.Data());
  return dlogits;
}

float eps_arg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "eps must be a number");
  double eps = info[i].As<Napi::Number>().DoubleValue();
  if (!(eps > 0 && std::isfinite(eps))) throw Napi::RangeError::New(info.Env(), "eps must be a positive finite number");
  return float(eps);
}

// rmsnormTrain(x, w, T, d, eps, { out?, impl, threads }) → y [T, d]: the runtime's rmsnorm (kernels.h) writing
// into `out`, for the trainer (kernels.rmsnorm always allocates).
Napi::Value RmsNormTrain(const Napi::CallbackInfo& info) {
  const size_t T = count_of(info, 2, "T"), d = count_of(info, 3, "d");
  const float* x = f32_exact(info, 0, T * d, "x");
  const float* w = f32_exact(info, 1, d, "w");
  const float eps = eps_arg(info, 4);
  Opts o = opts_arg(info, 5);
  Napi::Float32Array out = out_arg(o.o, "out", T * d);
  if (o.ref) rmsnorm_ref(x, w, int(T), int(d), eps, out.Data());
  else rmsnorm(shared_pool(o.threads), x, w, int(T), int(d), eps, out.Data());
  return out;
}

// rmsnormBackward(x, w, dy, T, d, eps, { dx?, dw?, impl, threads }) → { dx, dw }
Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  const size_t T = count_of(info, 3, "T"), d = count_of(info, 4, "d");
  const float* x = f32_exact(info, 0, T * d, "x");
  const float* w = f32_exact(info, 1, d, "w");
  const float* dy = f32_exact(info, 2, T * d, "dy");
  const float eps = eps_arg(info, 5);
  Opts o = opts_arg(info, 6);
  Napi::Float32Array dx = out_arg(o.o, "dx", T * d), dw = out_arg(o.o, "dw", d);
  if (o.ref) rmsnorm_backward_ref(x, w, dy, int(T), int(d), eps, dx.Data(), dw.Data());
  else rmsnorm_backward(shared_pool(o.threads), x, w, dy, int(T), int(d), eps, dx.Data(), dw.Data());
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("dx", dx);
  r.Set("dw", dw);
  return r;
}

int period_arg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "period must be a number");
  const double period = info[i].As<Napi::Number>().DoubleValue();
  if (!(period >= 0 && period <= 2147483647.0 && period == std::floor(period)))
    throw Napi::RangeError::New(info.Env(), "period must be a non-negative integer (0: no mask)");
  return int(period);
}

float scale_arg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "scale must be a number");
  const double scale = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(scale)) throw Napi::RangeError::New(info.Env(), "scale must be finite");
  return float(scale);
}

// causalSoftmax(x, R, C, scale, period, { out?, impl, threads }) → y [R, C]
Napi::Value CausalSoftmax(const Napi::CallbackInfo& info) {
  const size_t R = count_of(info, 1, "R"), C = count_of(info, 2, "C");
  const float* x = f32_exact(info, 0, R * C, "x");
  const float scale = scale_arg(info, 3);
  const int period = period_arg(info, 4);
  Opts o = opts_arg(info, 5);
  Napi::Float32Array y = out_arg(o.o, "out", R * C);
  if (o.ref) causal_softmax_ref(x, int(R), int(C), scale, period, y.Data());
  else causal_softmax(shared_pool(o.threads), x, int(R), int(C), scale, period, y.Data());
  return y;
}

// causalSoftmaxBackward(y, dy, R, C, scale, { out?, impl, threads }) → dx [R, C]
Napi::Value CausalSoftmaxBackward(const Napi::CallbackInfo& info) {
  const size_t R = count_of(info, 2, "R"), C = count_of(info, 3, "C");
  const float* y = f32_exact(info, 0, R * C, "y");
  const float* dy = f32_exact(info, 1, R * C, "dy");
  const float scale = scale_arg(info, 4);
  Opts o = opts_arg(info, 5);
  Napi::Float32Array dx = out_arg(o.o, "out", R * C);
  if (o.ref) causal_softmax_backward_ref(y, dy, int(R), int(C), scale, dx.Data());
  else causal_softmax_backward(shared_pool(o.threads), y, dy, int(R), int(C), scale, dx.Data());
  return dx;
}

}  // namespace

void add_training_kernel_bindings(Napi::Object kernels) {
  Napi::Env env = kernels.Env();
  kernels.Set("adamw", Napi::Function::New(env, AdamW));
  kernels.Set("sumSquares", Napi::Function::New(env, SumSquares));
  kernels.Set("routedSwiglu", Napi::Function::New(env, RoutedSwiglu));
  kernels.Set("routedSwigluBackward", Napi::Function::New(env, RoutedSwigluBackward));
  kernels.Set("softmaxXent", Napi::Function::New(env, SoftmaxXent));
  kernels.Set("rmsnormTrain", Napi::Function::New(env, RmsNormTrain));
  kernels.Set("rmsnormBackward", Napi::Function::New(env, RmsNormBackward));
  kernels.Set("softmaxXentBackward", Napi::Function::New(env, SoftmaxXentBackward));
  kernels.Set("causalSoftmax", Napi::Function::New(env, CausalSoftmax));
  kernels.Set("causalSoftmaxBackward", Napi::Function::New(env, CausalSoftmaxBackward));
}

}  // namespace dsmoe
