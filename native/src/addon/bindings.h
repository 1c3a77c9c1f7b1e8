// Pieces of the addon's exports, assembled in addon.cpp.
#pragma once
#include <napi.h>

namespace dsmoe {

class ThreadPool;

Napi::Object kernel_bindings(Napi::Env env);
ThreadPool* shared_pool(int threads);  // cached pool of this size (null for 1 thread)

}  // namespace dsmoe
