// Machine limits and kernel throughput without Node: STREAM-like triad (GB/s), FMA peak (GFLOP/s), then per ISA
// level the decode GEMV (bf16 and the quantized types: GB/s of weight bytes streamed, and the time against bf16's)
// and the GEMM at expert/prefill batch sizes
// (GFLOP/s and % of peak). `--quick` runs small sizes (ctest); `--repeat N` takes the best of N timed runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "../src/common/cpu.h"
#include "../src/common/threadpool.h"
#include "../src/kernels/kernels.h"

using namespace dsmoe;

static double best_seconds(int repeat, const std::function<void()>& fn) {
  fn();  // warm-up: first touch, pool start
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int main(int argc, char** argv) {
  bool quick = false;
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = std::max(1, std::atoi(argv[++i]));
  }
  ThreadPool pool{int(hardware_threads())};
  double bw = triad_gbs(&pool, quick ? (8u << 20) : (256u << 20));
  double peak = fma_peak_gflops(&pool);
  std::printf("detected %s, %d threads: triad %.1f GB/s, FMA peak %.1f GFLOP/s\n", simd_name(simd_detected()),
              pool.size(), bw, peak);
  bool ok = bw > 0 && peak > 0;
  std::vector<Simd> levels = {Simd::Scalar};
  if (simd_detected() == Simd::Avx2 || simd_detected() == Simd::Avx512) levels.push_back(Simd::Avx2);
  if (simd_detected() == Simd::Avx512) levels.push_back(Simd::Avx512);
  const int shapes[][2] = {{5632, 2048}, {2048, 5632}};  // [N, K]: a 1B-shape expert's gate+up and down
  for (Simd level : levels) {
    set_simd(level);
    if (quick && level == Simd::Scalar) continue;
    for (auto& s : shapes) {
      int N = quick ? s[0] / 8 : s[0], K = s[1];
      std::vector<float> x(K, 0.5f), y(N);
      const std::vector<float> row(K, 0.25f);  // every format stores 0.25 exactly (Q8_0 to within its f16 scale)
      double bf16_seconds = 0;
      for (DType t : {DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q3_A, DType::Q2_A}) {
        std::vector<uint8_t> W(bytes_of(t, size_t(N) * K));
        for (int n = 0; n < N; ++n) {
          uint8_t* dst = W.data() + bytes_of(t, size_t(n) * K);
          if (is_quantized(t)) {
            quantize_row(row.data(), K, t, dst);
          } else {
            const uint16_t h = f32_to_bf16(0.25f);
            for (int k = 0; k < K; ++k) std::memcpy(dst + 2 * k, &h, 2);
          }
        }
        double sec = best_seconds(repeat, [&] { linear(&pool, x.data(), 1, K, W.data(), t, N, y.data(), N, Epilogue{}); });
        if (t == DType::BF16) bf16_seconds = sec;
        double gbs = double(W.size()) / sec / 1e9;
        std::printf("%-6s %-4s GEMV [%d,%d]: %.2f GB/s (%.0f%% of triad), %.2f× bf16's speed\n", simd_name(level),
                    dtype_name(t), N, K, gbs, 100 * gbs / bw, bf16_seconds / sec);
        ok = ok && std::fabs(y[0] - 0.5f * 0.25f * K) <= 1e-3f * K;
      }
    }
    for (int M : {16, 64, 512}) {
      int K = 1024, N = quick ? 256 : 2048;
      if (quick && M == 512) continue;
      std::vector<float> X(size_t(M) * K, 0.5f), Y(size_t(M) * N);
      std::vector<uint16_t> W(size_t(N) * K, f32_to_bf16(0.25f));
      double t = best_seconds(repeat, [&] { linear(&pool, X.data(), M, K, W.data(), DType::BF16, N, Y.data(), N, Epilogue{}); });
      double gf = 2.0 * M * N * K / t / 1e9;
      std::printf("%-6s bf16 GEMM M=%d N=%d K=%d: %.1f GFLOP/s (%.0f%% of peak)\n", simd_name(level), M, N, K, gf,
                  100 * gf / peak);
      ok = ok && Y[0] == 0.5f * 0.25f * K;
    }
  }
  return ok ? 0 : 1;
}
