// Pieces of the addon's exports, assembled in addon.cpp.
#pragma once
#include <napi.h>

namespace dsmoe {

class ThreadPool;

Napi::Object kernel_bindings(Napi::Env env);
void add_training_kernel_bindings(Napi::Object kernels);  // train_bindings.cpp: adamw, sumSquares, fused element-wise kernels
ThreadPool* shared_pool(int threads);  // cached pool of this size (null for 1 thread)

}  // namespace dsmoe
