// The expert cache (issue 13, "Fast Inference of MoE Language Models with Offloading", Eliseev & Mazur 2023): the
// routed experts' weights stay in the plan file (the slow tier) and are read on demand with pread into a fixed pool
// of slots per layer, evicted least-recently-used per layer. Loads run on their own I/O threads, so loads queued
// ahead of time (speculative prefetch of the next layer's experts) overlap compute. The pool of layer l holds
// `slots` experts laid out as the plan packs them ([S, 2I, d] gate_up, [S, d, I] down), so the expert kernels read
// a cache slot exactly as they read a packed expert: the cache changes where bytes come from, never the arithmetic.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dsmoe {

// Where one layer's packed experts live in the file: expert p's gate_up rows at gate_up_offset + p·gate_up_bytes.
struct CachedLayer {
  uint64_t gate_up_offset = 0, gate_up_bytes = 0;  // per expert
  uint64_t down_offset = 0, down_bytes = 0;        // per expert
  int experts = 0;                                 // K packed experts
};

struct ExpertCacheStats {
  int64_t hits = 0;              // demanded experts already resident (or already being loaded by a prefetch)
  int64_t misses = 0;            // demanded experts that had to be read
  int64_t loads = 0;             // expert reads completed (demand and prefetch)
  int64_t bytes_read = 0;
  double stall_seconds = 0;      // compute waiting for loads
  int64_t prefetches = 0;        // reads queued by prefetch
  int64_t predicted = 0;         // experts predicted for a layer (Σ over steps of |predicted|)
  int64_t predicted_used = 0;    // of those, demanded by that layer in the same step (|predicted ∩ demanded|)
  int64_t demanded_predicted = 0;  // demanded experts on layers that had a prediction (recall's denominator)
  // Reads queued or running when the stats were taken: a miss or prefetch is counted when queued and a load when its
  // read completes, so misses + prefetches = loads + in_flight (+ failed reads) at every instant.
  int64_t in_flight = 0;
};

class ExpertCache {
 public:
  // Opens `path` for pread. `slots` per layer ≥ 1 (clamped to each layer's expert count); throws
  // std::runtime_error on a bad file. `direct`: read with O_DIRECT (through an aligned bounce buffer), bypassing the
  // page cache, so every miss costs a device read as it would for a plan larger than memory (the benchmark's mode).
  ExpertCache(const std::string& path, std::vector<CachedLayer> layers, int slots, int io_threads, bool direct = false);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  int slots(int layer) const { return int(layers_[layer].slot.size()); }
  const uint8_t* gate_up_pool(int layer) const { return layers_[layer].gate_up.data(); }
  const uint8_t* down_pool(int layer) const { return layers_[layer].down.data(); }

  // Makes the packed experts `experts` (distinct, at most slots(layer) of them) resident in `layer`, pinned until
  // release(layer): request() assigns slots and queues the reads without waiting; wait() blocks until they are in
  // and returns each expert's slot. Throws std::runtime_error when a read failed.
  void request(int layer, const std::vector<int>& experts);
  std::vector<int> wait(int layer, const std::vector<int>& experts);
  void release(int layer);

  // Queues reads for the predicted experts of `layer` into unpinned slots (never waits, never evicts a pinned or
  // in-flight slot) and remembers the prediction for the recall/precision counters of that layer's next request.
  void prefetch(int layer, const std::vector<int>& experts);

  // Empties every slot (waiting for reads in flight): the "no cache" baseline reloads every expert each step.
  void invalidate();

  ExpertCacheStats stats() const;
  void reset_stats();

 private:
  enum class State { Empty, Loading, Ready, Failed };
  struct Slot {
    int expert = -1;
    State state = State::Empty;
    bool pinned = false;
    uint64_t last_use = 0;
    std::string error;
  };
  struct Layer {
    CachedLayer where;
    std::vector<uint8_t> gate_up, down;  // [S · gate_up_bytes], [S · down_bytes]
    std::vector<Slot> slot;
    std::vector<int> slot_of;            // [K] packed expert → slot or −1
    std::vector<uint8_t> predicted;      // [K] 1 when the last prefetch predicted it; consumed by request()
    bool has_prediction = false;
  };
  struct Load { int layer, slot, expert; };

  int victim(Layer& L) const;  // LRU among unpinned, not-in-flight slots; −1 when none (mutex held)
  void assign(int layer, int slot, int expert, bool demand);  // mutex held
  void io_loop();
  void read_exact(uint8_t* dst, uint64_t bytes, uint64_t offset, std::string* error) const;

  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  std::vector<Layer> layers_;
  mutable std::mutex mutex_;
  std::condition_variable loaded_;  // a slot left Loading
  std::condition_variable queued_;  // a load was queued, or stopping
  std::deque<Load> demand_, speculative_;  // demand loads go first
  bool stopping_ = false;
  uint64_t tick_ = 0;
  ExpertCacheStats stats_;
  std::vector<std::thread> io_;
};

}  // namespace dsmoe
