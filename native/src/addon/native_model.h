// NativeModel (JS class): owns the weights on their device (an Engine: mapped on the CPU, uploaded on CUDA);
// creates NativeContexts.
#pragma once
#include <napi.h>

#include <memory>

#include "engine.h"

namespace dsmoe {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);
  std::shared_ptr<Engine> engine(Napi::Env env) const;  // throws when disposed

 private:
  Napi::Value NewContext(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value ExpertCacheStats(const Napi::CallbackInfo& info);
  Napi::Value OpTimes(const Napi::CallbackInfo& info);

  std::shared_ptr<Engine> engine_;  // contexts share ownership, so dispose never frees weights under a running call
};

}  // namespace dsmoe
