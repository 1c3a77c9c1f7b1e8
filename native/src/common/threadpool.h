// A fixed pool of worker threads; work is split into contiguous index ranges (kernels split by output rows).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsmoe {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // Calls fn(begin, end, worker) over [0, n) split into at most size() contiguous ranges, each a multiple of
  // `grain` (except the last); the caller's thread runs range 0. Returns when all ranges are done.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn);

 private:
  void worker_loop(int index);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_cv_;
  const std::function<void(size_t, size_t, int)>* job_ = nullptr;
  size_t n_ = 0, grain_ = 1;
  int active_ = 0;  // ranges in the current job
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
};

// Runs fn over [0, n) on the pool, or inline when pool is null (single thread).
inline void parallel_for(ThreadPool* pool, size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  if (!pool || pool->size() <= 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  pool->parallel_for(n, grain, fn);
}

}  // namespace dsmoe
