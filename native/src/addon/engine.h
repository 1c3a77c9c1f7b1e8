// The addon's seam between the JS classes and a device: an Engine owns the weights (CPU: mapped, CUDA: uploaded),
// a Session is one context's KV cache and the forward pass over it. NativeModel and NativeContext hold these, so
// they do not know which device runs; `make_engine` picks it from the spec's device field.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../model/model.h"

namespace dsmoe {

class Session {
 public:
  virtual ~Session() = default;
  // tokens/slots/positions [T] → logits [R, V] of output_rows (Model::forward's contract); throws on bad input
  virtual std::vector<float> forward(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                     const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows,
                                     const RoutingOverride& routing) = 0;
  virtual int slots() const = 0;
  virtual int length(int slot) const = 0;
  virtual void clear(int slot) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::shared_ptr<Session> new_session(int slots, int max_context) = 0;  // shares ownership of the engine
  virtual void stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const = 0;
  virtual void reset_stats() = 0;
  virtual bool cache_stats(ExpertCacheStats* out) const = 0;
  // Wall time per forward phase (model.h Model::op_times); false where the spec did not ask for it or the device
  // does not time its phases (CUDA).
  virtual bool op_times(OpTimes* out) const { return false; }
  // How the weights are held (mapped_file.h) and why that fell short of the spec's residency ("" when it did not).
  virtual std::string residency() const { return residency_name(spec().residency); }
  virtual std::string residency_warning() const { return ""; }
  // Selections per layer per attention expert since the last reset (MoA; empty where the engine has none).
  virtual std::vector<std::vector<int64_t>> attention_stats() const { return {}; }
  // The last forward's pre-gated routings (Megrez2; model.h EarlyRouting); empty where the engine has none.
  virtual std::vector<EarlyRouting> last_early_routing() const { return {}; }  // false when every expert is resident (CUDA: always)
  virtual const ModelSpec& spec() const = 0;
  virtual int threads() const = 0;
  virtual std::string device() const = 0;       // "cpu" or "cuda"
  virtual std::string device_name() const = 0;  // the card's name on CUDA, "" on the CPU
};

// device "cpu" or "cuda" (the latter only in builds that link native/cuda); throws std::runtime_error
std::shared_ptr<Engine> make_engine(const std::string& device, ModelSpec spec);

}  // namespace dsmoe
