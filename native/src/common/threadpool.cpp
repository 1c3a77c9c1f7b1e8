#include "threadpool.h"

#include <algorithm>

namespace dsmoe {

// Range r of `parts` ranges over [0, n), each a multiple of grain.
static void split(size_t n, size_t grain, int parts, int r, size_t* begin, size_t* end) {
  size_t blocks = (n + grain - 1) / grain;
  size_t per = blocks / parts, extra = blocks % parts;
  size_t b0 = r * per + std::min<size_t>(r, extra);
  size_t b1 = b0 + per + (size_t(r) < extra ? 1 : 0);
  *begin = std::min(n, b0 * grain);
  *end = std::min(n, b1 * grain);
}

ThreadPool::ThreadPool(int threads) : threads_(std::max(1, threads)) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn) {
  grain = std::max<size_t>(1, grain);
  size_t blocks = (n + grain - 1) / grain;
  int parts = int(std::min<size_t>(blocks, size_t(threads_)));
  if (parts <= 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    n_ = n;
    grain_ = grain;
    active_ = parts;
    pending_.store(parts - 1);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  size_t b, e;
  split(n, grain, parts, 0, &b, &e);
  fn(b, e, 0);
  // Workers finish within microseconds for decode-sized jobs: spin briefly before sleeping.
  for (int spin = 0; spin < 20000 && pending_.load(std::memory_order_acquire) > 0; ++spin) std::this_thread::yield();
  if (pending_.load(std::memory_order_acquire) > 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return pending_.load() == 0; });
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little on the generation counter (low decode latency), then block.
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; spin < 4000 && g == seen; ++spin) {
      std::this_thread::yield();
      g = generation_.load(std::memory_order_acquire);
    }
    const std::function<void(size_t, size_t, int)>* job;
    size_t n, grain;
    int parts;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      job = job_;
      n = n_;
      grain = grain_;
      parts = active_;
    }
    if (index < parts) {
      size_t b, e;
      split(n, grain, parts, index, &b, &e);
      (*job)(b, e, index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_cv_.notify_one();
      }
    }
  }
}

}  // namespace dsmoe
