#include "expert_cache.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

namespace dsmoe {

ExpertCache::ExpertCache(const std::string& path, std::vector<CachedLayer> layers, int slots, int io_threads, bool direct)
    : path_(path), direct_(direct) {
  if (slots < 1) throw std::runtime_error("the expert cache needs at least 1 slot per layer, got " + std::to_string(slots));
  if (io_threads < 1 || io_threads > 64) throw std::runtime_error("expert cache I/O threads must be in [1, 64]");
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
  if (fd_ < 0)
    throw std::runtime_error("cannot open weights file " + path + " for the expert cache" + (direct ? " with O_DIRECT" : "") +
                             ": " + std::strerror(errno));
  layers_.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    Layer& L = layers_[l];
    L.where = layers[l];
    const int S = std::min(slots, L.where.experts);
    L.gate_up.resize(size_t(S) * L.where.gate_up_bytes);
    L.down.resize(size_t(S) * L.where.down_bytes);
    L.slot.resize(S);
    L.slot_of.assign(L.where.experts, -1);
    L.predicted.assign(L.where.experts, 0);
  }
  for (int i = 0; i < io_threads; ++i) io_.emplace_back([this] { io_loop(); });
}

ExpertCache::~ExpertCache() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queued_.notify_all();
  for (std::thread& t : io_) t.join();
  if (fd_ >= 0) ::close(fd_);
}

void ExpertCache::read_exact(uint8_t* dst, uint64_t bytes, uint64_t offset, std::string* error) const {
  if (direct_) {
    // O_DIRECT wants the buffer, offset and length aligned to the device block: read the enclosing aligned range
    // into this thread's bounce buffer and copy out the part asked for. The range may run past the end of the
    // file; only the bytes asked for must arrive.
    constexpr uint64_t kAlign = 4096;
    const uint64_t begin = offset / kAlign * kAlign, end = (offset + bytes + kAlign - 1) / kAlign * kAlign;
    struct Bounce {
      uint8_t* p = nullptr;
      uint64_t size = 0;
      ~Bounce() { std::free(p); }
    };
    thread_local Bounce bounce;
    if (bounce.size < end - begin) {
      std::free(bounce.p);
      bounce.p = static_cast<uint8_t*>(std::aligned_alloc(kAlign, end - begin));
      bounce.size = bounce.p ? end - begin : 0;
      if (!bounce.p) {
        *error = "cannot allocate a read buffer of " + std::to_string(end - begin) + " bytes";
        return;
      }
    }
    uint64_t got = 0;
    while (begin + got < offset + bytes) {
      ssize_t n = ::pread(fd_, bounce.p + got, size_t(end - begin - got), off_t(begin + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        *error = "cannot read " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) + " of " + path_ +
                 " (O_DIRECT): " + (n < 0 ? std::strerror(errno) : "unexpected end of file");
        return;
      }
      got += uint64_t(n);
      if (got % kAlign != 0 && begin + got < offset + bytes) {  // a short read mid-file cannot continue aligned
        *error = "short O_DIRECT read of " + path_ + " at offset " + std::to_string(begin + got);
        return;
      }
    }
    std::memcpy(dst, bounce.p + (offset - begin), bytes);
    return;
  }
  while (bytes > 0) {
    ssize_t n = ::pread(fd_, dst, size_t(std::min<uint64_t>(bytes, uint64_t(1) << 30)), off_t(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "cannot read " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) + " of " + path_ +
               ": " + (n < 0 ? std::strerror(errno) : "unexpected end of file");
      return;
    }
    dst += n;
    bytes -= uint64_t(n);
    offset += uint64_t(n);
  }
}

void ExpertCache::io_loop() {
  for (;;) {
    Load job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queued_.wait(lock, [&] { return stopping_ || !demand_.empty() || !speculative_.empty(); });
      if (stopping_) return;
      std::deque<Load>& q = demand_.empty() ? speculative_ : demand_;
      job = q.front();
      q.pop_front();
    }
    // The slot is Loading: nobody else writes its bytes or evicts it until it leaves that state.
    Layer& L = layers_[job.layer];
    const CachedLayer& w = L.where;
    std::string error;
    read_exact(L.gate_up.data() + size_t(job.slot) * w.gate_up_bytes, w.gate_up_bytes,
               w.gate_up_offset + uint64_t(job.expert) * w.gate_up_bytes, &error);
    if (error.empty())
      read_exact(L.down.data() + size_t(job.slot) * w.down_bytes, w.down_bytes,
                 w.down_offset + uint64_t(job.expert) * w.down_bytes, &error);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Slot& s = L.slot[job.slot];
      if (error.empty()) {
        s.state = State::Ready;
        stats_.loads += 1;
        stats_.bytes_read += int64_t(w.gate_up_bytes + w.down_bytes);
      } else {
        s.state = State::Failed;
        s.error = error;
      }
    }
    loaded_.notify_all();
  }
}

int ExpertCache::victim(Layer& L) const {
  int best = -1;
  for (int i = 0; i < int(L.slot.size()); ++i) {
    const Slot& s = L.slot[i];
    if (s.pinned || s.state == State::Loading) continue;
    if (best < 0 || s.last_use < L.slot[best].last_use) best = i;
  }
  return best;
}

void ExpertCache::assign(int layer, int slot, int expert, bool demand) {
  Layer& L = layers_[layer];
  Slot& s = L.slot[slot];
  if (s.expert >= 0) L.slot_of[s.expert] = -1;
  s.expert = expert;
  s.state = State::Loading;
  s.error.clear();
  L.slot_of[expert] = slot;
  (demand ? demand_ : speculative_).push_back({layer, slot, expert});
  queued_.notify_one();
}

void ExpertCache::request(int layer, const std::vector<int>& experts) {
  std::unique_lock<std::mutex> lock(mutex_);
  Layer& L = layers_[layer];
  if (int(experts.size()) > int(L.slot.size()))
    throw std::runtime_error("expert cache: layer " + std::to_string(layer) + " needs " + std::to_string(experts.size()) +
                             " experts at once but holds " + std::to_string(L.slot.size()));
  const uint64_t now = ++tick_;
  if (L.has_prediction) {
    int64_t used = 0, predicted = 0;
    for (int p : experts) used += L.predicted[p];
    for (uint8_t v : L.predicted) predicted += v;
    stats_.predicted += predicted;
    stats_.predicted_used += used;
    stats_.demanded_predicted += int64_t(experts.size());
    std::fill(L.predicted.begin(), L.predicted.end(), 0);
    L.has_prediction = false;
  }
  for (int p : experts) {  // pin what is there (or on its way) first, so no miss below evicts it
    if (p < 0 || p >= L.where.experts) throw std::runtime_error("expert cache: bad expert index " + std::to_string(p));
    int s = L.slot_of[p];
    if (s >= 0 && L.slot[s].state == State::Failed) {  // a failed prefetch: read it again on demand
      L.slot_of[p] = -1;
      L.slot[s].expert = -1;
      L.slot[s].state = State::Empty;
      s = -1;
    }
    if (s < 0) continue;
    stats_.hits += 1;
    L.slot[s].pinned = true;
    L.slot[s].last_use = now;
  }
  for (int p : experts) {
    if (L.slot_of[p] >= 0) continue;
    stats_.misses += 1;
    int v;
    // Every unpinned slot may be in flight with a prefetch: wait for one to land (at most one read's time).
    while ((v = victim(L)) < 0) loaded_.wait(lock);
    assign(layer, v, p, true);
    L.slot[v].pinned = true;
    L.slot[v].last_use = now;
  }
}

std::vector<int> ExpertCache::wait(int layer, const std::vector<int>& experts) {
  std::unique_lock<std::mutex> lock(mutex_);
  Layer& L = layers_[layer];
  auto ready = [&] {
    for (int p : experts) {
      int s = L.slot_of[p];
      if (s < 0 || L.slot[s].state == State::Loading) return false;
    }
    return true;
  };
  if (!ready()) {
    auto t0 = std::chrono::steady_clock::now();
    loaded_.wait(lock, ready);
    stats_.stall_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::vector<int> out;
  out.reserve(experts.size());
  for (int p : experts) {
    Slot& s = L.slot[L.slot_of[p]];
    if (s.state == State::Failed) {
      std::string error = s.error;
      s.state = State::Empty;  // the next request reads it again
      L.slot_of[p] = -1;
      s.expert = -1;
      for (Slot& o : L.slot) o.pinned = false;
      throw std::runtime_error("expert cache: " + error);
    }
    out.push_back(L.slot_of[p]);
  }
  return out;
}

void ExpertCache::release(int layer) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& s : layers_[layer].slot) s.pinned = false;
}

void ExpertCache::prefetch(int layer, const std::vector<int>& experts) {
  std::lock_guard<std::mutex> lock(mutex_);
  Layer& L = layers_[layer];
  std::fill(L.predicted.begin(), L.predicted.end(), 0);
  L.has_prediction = true;
  const uint64_t now = ++tick_;
  // Mark the whole prediction first, so one predicted expert never evicts another.
  for (int p : experts)
    if (p >= 0 && p < L.where.experts) L.predicted[p] = 1;
  for (int p : experts) {
    if (p < 0 || p >= L.where.experts) continue;
    int s = L.slot_of[p];
    if (s >= 0) {
      L.slot[s].last_use = now;
      continue;
    }
    int v = -1;
    for (int i = 0; i < int(L.slot.size()); ++i) {  // LRU among slots that are not themselves predicted
      const Slot& c = L.slot[i];
      if (c.pinned || c.state == State::Loading || (c.expert >= 0 && L.predicted[c.expert])) continue;
      if (v < 0 || c.last_use < L.slot[v].last_use) v = i;
    }
    if (v < 0) break;  // the cache is smaller than the prediction: keep what is there
    assign(layer, v, p, false);
    L.slot[v].last_use = now;
    stats_.prefetches += 1;
  }
}

void ExpertCache::invalidate() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    loaded_.wait(lock, [&] {
      for (const Slot& s : L.slot)
        if (s.state == State::Loading) return false;
      return true;
    });
    for (Slot& s : L.slot) s = Slot{};
    std::fill(L.slot_of.begin(), L.slot_of.end(), -1);
  }
}

ExpertCacheStats ExpertCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ExpertCacheStats out = stats_;
  for (const Layer& L : layers_)
    for (const Slot& s : L.slot)
      if (s.state == State::Loading) out.in_flight += 1;
  return out;
}

void ExpertCache::reset_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = ExpertCacheStats{};
}

}  // namespace dsmoe
