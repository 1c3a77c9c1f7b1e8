#include "engine.h"

#include <stdexcept>

#ifdef DSMOE_HAVE_CUDA
#include "../model/cuda_model.h"
#endif

namespace dsmoe {

namespace {

// One implementation per device over its model and cache types (Model/KvCache, CudaModel/CudaKvCache).
template <class M, class Cache>
class DeviceSession : public Session {
 public:
  DeviceSession(std::shared_ptr<M> model, int slots, int max_context)
      : model_(std::move(model)), cache_(*model_, slots, max_context) {}
  std::vector<float> forward(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                             const std::vector<int32_t>& positions, const std::vector<int32_t>& output_rows,
                             const RoutingOverride& routing) override {
    return model_->forward(cache_, tokens, slots, positions, output_rows, routing);
  }
  int slots() const override { return cache_.slots(); }
  int length(int slot) const override { return cache_.length(slot); }
  void clear(int slot) override { cache_.clear(slot); }

 private:
  std::shared_ptr<M> model_;  // a context keeps its weights alive after NativeModel.dispose
  Cache cache_;
};

class CpuEngine : public Engine {
 public:
  explicit CpuEngine(ModelSpec spec) : model_(std::make_shared<Model>(std::move(spec))) {}
  std::shared_ptr<Session> new_session(int slots, int max_context) override {
    return std::make_shared<DeviceSession<Model, KvCache>>(model_, slots, max_context);
  }
  void stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const override { model_->stats(counts, tokens); }
  void reset_stats() override { model_->reset_stats(); }
  bool cache_stats(ExpertCacheStats* out) const override { return model_->cache_stats(out); }
  bool op_times(OpTimes* out) const override { return model_->op_times(out); }
  std::string residency() const override { return residency_name(model_->residency()); }
  std::string residency_warning() const override { return model_->residency_warning(); }
  std::vector<EarlyRouting> last_early_routing() const override { return model_->last_early_routing(); }
  std::vector<std::vector<int64_t>> attention_stats() const override { return model_->attention_stats(); }
  const ModelSpec& spec() const override { return model_->spec(); }
  int threads() const override { return model_->threads(); }
  std::string device() const override { return "cpu"; }
  std::string device_name() const override { return ""; }

 private:
  std::shared_ptr<Model> model_;
};

#ifdef DSMOE_HAVE_CUDA
class CudaEngine : public Engine {
 public:
  explicit CudaEngine(ModelSpec spec) : model_(std::make_shared<CudaModel>(std::move(spec))) {}
  std::shared_ptr<Session> new_session(int slots, int max_context) override {
    return std::make_shared<DeviceSession<CudaModel, CudaKvCache>>(model_, slots, max_context);
  }
  void stats(std::vector<std::vector<int64_t>>* counts, int64_t* tokens) const override { model_->stats(counts, tokens); }
  void reset_stats() override { model_->reset_stats(); }
  bool cache_stats(ExpertCacheStats* out) const override { return model_->cache_stats(out); }
  const ModelSpec& spec() const override { return model_->spec(); }
  int threads() const override { return 1; }  // the host thread that drives the stream
  std::string device() const override { return "cuda"; }
  std::string device_name() const override { return model_->device_name(); }

 private:
  std::shared_ptr<CudaModel> model_;
};
#endif

}  // namespace

std::shared_ptr<Engine> make_engine(const std::string& device, ModelSpec spec) {
  if (device == "cpu") return std::make_shared<CpuEngine>(std::move(spec));
  if (device == "cuda") {
#ifdef DSMOE_HAVE_CUDA
    return std::make_shared<CudaEngine>(std::move(spec));
#else
    throw std::runtime_error("this build of the addon has no CUDA runtime (nvcc was not found when it was built)");
#endif
  }
  throw std::runtime_error("device must be cpu or cuda, got " + device);
}

}  // namespace dsmoe
