// The sparse model on an NVIDIA GPU (docs/cuda.md "Addon integration"): the same ModelSpec as the CPU Model, its
// tensors checked by a CPU Model over the same mapping and uploaded once, then the forward pass of design.md §1 as a
// chain of dsmoe_cuda.h calls on one stream. Compiled only when the addon links native/cuda (DSMOE_HAVE_CUDA).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model.h"

namespace dsmoe {

// One device allocation; freed with the owner. grow() reallocates (contents lost) when more bytes are needed.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer();
  void grow(size_t bytes, const char* what);
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaKvCache;

class CudaModel {
 public:
  explicit CudaModel(ModelSpec spec);  // checks every tensor (through a CPU Model), uploads; throws std::runtime_error
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelSpec& spec() const { return spec_; }
  int head_dim() const { return host_.head_dim(); }
  const std::string& device_name() const { return device_name_; }

  // Same contract as Model::forward: logits [R, V] of output_rows, f32, copied back to the host.
  std::vector<float> forward(CudaKvCache& cache, const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                             const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows,
                             const RoutingOverride& routing);

  void stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const;
  void reset_stats();
  // The device expert cache's counters (native/cuda/dsmoe_cuda_expert_cache.h); false when every expert is resident.
  bool cache_stats(ExpertCacheStats* out) const;

 private:
  struct Layer {
    DeviceBuffer attn_norm, qkv, qkv_bias, o, mlp_norm, router, gate_up, down, expert_slot;
    DeviceBuffer shared_gate_up, shared_down, shared_gate;
  };
  struct Scratch;  // activations and workspace, grown to the largest batch seen

  ExpertCacheSpec cache_spec_;  // spec.expert_cache as asked (the host model below gets none: it never computes)
  Model host_;  // the mapped, checked weights: the source of every upload (its forward is never called)
  ModelSpec spec_;  // host_.spec() with cache_spec_ put back, as the engine reports it
  // With spec.expert_cache.slots > 0: the routed experts stay in pinned host memory and a fixed pool of device slots
  // per expert pool holds the ones in use (dsmoe_cuda_expert_cache*, opaque here so no CUDA header is needed).
  void* expert_cache_ = nullptr;
  std::string device_name_;
  void* stream_ = nullptr;
  DeviceBuffer embed_, norm_, lm_head_;
  bool lm_head_is_embed_ = false;
  std::vector<Layer> layers_;
  std::unique_ptr<Scratch> scratch_;
  mutable std::mutex mutex_;                  // one forward at a time (one stream, one scratch)
  std::vector<std::vector<int64_t>> counts_;  // [L][E]
  int64_t tokens_ = 0;
};

// KV cache of one context on the device: f32 [L][slots, max_context, KV, hd] for k and for v, as the CPU's.
class CudaKvCache {
 public:
  CudaKvCache(const CudaModel& model, int slots, int max_context);
  int slots() const { return slots_; }
  int max_context() const { return max_context_; }
  const std::vector<int>& lengths() const { return length_; }
  int length(int slot) const { return length_[slot]; }
  void set_length(int slot, int n) { length_[slot] = n; }
  void clear(int slot) { length_[slot] = 0; }
  float* k(int layer) const { return k_.as<float>() + size_t(layer) * layer_floats_; }
  float* v(int layer) const { return v_.as<float>() + size_t(layer) * layer_floats_; }

 private:
  int slots_, max_context_;
  size_t layer_floats_;
  DeviceBuffer k_, v_;
  std::vector<int> length_;
};

}  // namespace dsmoe
