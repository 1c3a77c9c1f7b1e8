#include "threadpool.h"

#include <algorithm>

#include "arch.h"

#if DSMOE_X86
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace dsmoe {

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

void ThreadPool::run_chunks(Job& job, int worker) {
  for (;;) {
    size_t c = job.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= job.chunks) return;
    size_t b = c * job.grain, e = std::min(job.n, b + job.grain);
    (*job.fn)(b, e, worker);
    job.done.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn) {
  Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = std::max<size_t>(1, grain);
  job.chunks = (n + job.grain - 1) / job.grain;
  if (job.chunks <= 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_chunks(job, 0);
  // Chunks other threads are still running: short spin, then yield the core.
  for (int spin = 0; job.done.load(std::memory_order_acquire) < job.chunks; ++spin) {
    if (spin < 2000) cpu_relax();
    else std::this_thread::yield();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = nullptr;  // late workers no longer join
  }
  // Workers that joined may still hold &job (they find no chunk left and leave at once).
  while (inside_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly on the generation counter (decode issues many short jobs back to back), then sleep.
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; spin < 4000 && g == seen; ++spin) {
      cpu_relax();
      g = generation_.load(std::memory_order_acquire);
    }
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      job = job_;
      if (job) inside_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (job) {
      run_chunks(*job, index);
      inside_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace dsmoe
