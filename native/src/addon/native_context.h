// NativeContext (JS class): a KV cache for `slots` sequences and the asynchronous evaluate() of llama.cpp-style
// batches. One evaluation at a time per context; a second concurrent call is rejected.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

#include "engine.h"

namespace dsmoe {

class NativeContext : public Napi::ObjectWrap<NativeContext> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit NativeContext(const Napi::CallbackInfo& info);
  void attach(std::shared_ptr<Engine> engine, int slots, int max_context);

  std::atomic<bool> busy{false};

 private:
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value ClearSlot(const Napi::CallbackInfo& info);
  Napi::Value RoutingStats(const Napi::CallbackInfo& info);
  Napi::Value ResetStats(const Napi::CallbackInfo& info);
  Napi::Value EarlyRouting(const Napi::CallbackInfo& info);
  Napi::Value SlotLength(const Napi::CallbackInfo& info);

  std::shared_ptr<Engine> engine_;
  std::shared_ptr<Session> session_;
};

}  // namespace dsmoe
