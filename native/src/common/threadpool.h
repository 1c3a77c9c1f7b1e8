// A fixed pool of worker threads with dynamic chunking: parallel_for splits [0, n) into chunks of `grain` that
// the calling thread and the workers take from a shared counter. A worker that the OS has not scheduled (the
// machine may be shared) then delays nothing: the others take its chunks. Kernels split by output rows.
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

  // Calls fn(begin, end, worker) for chunks [begin, end) covering [0, n), each `grain` long (the last may be
  // shorter). Returns when every chunk is done. Not re-entrant: one parallel_for at a time per pool.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn);

 private:
  struct Job {
    const std::function<void(size_t, size_t, int)>* fn;
    size_t n, grain, chunks;
    std::atomic<size_t> next{0};
    std::atomic<size_t> done{0};
  };
  static void run_chunks(Job& job, int worker);
  void worker_loop(int index);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  Job* job_ = nullptr;              // the job workers may join, under mutex_
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> inside_{0};      // workers currently holding a pointer to a job
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
