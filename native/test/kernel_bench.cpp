// Machine limits and kernel throughput without Node: STREAM-like triad (GB/s), FMA peak (GFLOP/s), and the
// prefill-sized GEMM against that peak. `--quick` runs small sizes (ctest).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../src/common/cpu.h"
#include "../src/common/threadpool.h"
#include "../src/kernels/kernels.h"

using namespace dsmoe;

int main(int argc, char** argv) {
  bool quick = argc > 1 && !std::strcmp(argv[1], "--quick");
  ThreadPool pool{int(hardware_threads())};
  double bw = triad_gbs(&pool, quick ? (8u << 20) : (256u << 20));
  double peak = fma_peak_gflops(&pool);
  std::printf("simd %s, %d threads: triad %.1f GB/s, FMA peak %.1f GFLOP/s\n", simd_name(simd_level()), pool.size(), bw, peak);
  int M = quick ? 64 : 512, K = 1024, N = quick ? 256 : 2048;
  std::vector<float> X(size_t(M) * K, 0.5f), Y(size_t(M) * N);
  std::vector<uint16_t> W(size_t(N) * K, f32_to_bf16(0.25f));
  linear(&pool, X.data(), M, K, W.data(), DType::BF16, N, Y.data(), N, Epilogue{});
  auto t0 = std::chrono::steady_clock::now();
  int reps = quick ? 2 : 5;
  for (int r = 0; r < reps; ++r) linear(&pool, X.data(), M, K, W.data(), DType::BF16, N, Y.data(), N, Epilogue{});
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
  double gf = 2.0 * M * N * K / dt / 1e9;
  std::printf("bf16 GEMM %dx%dx%d: %.1f GFLOP/s (%.0f%% of peak)\n", M, N, K, gf, 100 * gf / peak);
  return (bw > 0 && peak > 0 && Y[0] == 0.5f * 0.25f * K) ? 0 : 1;
}
