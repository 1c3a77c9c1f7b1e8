// `kernels.*` for the tfjs trainer's optimizer step (adamw.h): adamw (in place) and sumSquares. Each takes the
// same { impl: 'ref' | 'fast', threads } options as the other kernels.
#include <cmath>
#include <string>

#include "../kernels/adamw.h"
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

}  // namespace

void add_training_kernel_bindings(Napi::Object kernels) {
  Napi::Env env = kernels.Env();
  kernels.Set("adamw", Napi::Function::New(env, AdamW));
  kernels.Set("sumSquares", Napi::Function::New(env, SumSquares));
}

}  // namespace dsmoe
