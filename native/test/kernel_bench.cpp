// Machine limits and kernel throughput without Node: STREAM-like triad (GB/s), FMA peak (GFLOP/s), then per ISA
// level the decode GEMV (bf16 and the quantized types: GB/s of weight bytes streamed, and the time against bf16's;
// quantized: the int8 GEMV with and without VNNI, and the f32-activation GEMV), int8 GEMV against the alternatives
// by batch size,
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
        // Quantized weights: the int8 GEMV (with and without VNNI where the CPU has it), then the f32 GEMV it
        // replaces (activations in f32, weights dequantized in registers).
        struct Path { const char* name; int int8_rows; bool vnni; };
        std::vector<Path> paths = {{"", kGemvMaxRows, vnni_detected()}};
        if (is_quantized(t)) {
          if (level == Simd::Avx512 && vnni_detected()) paths.push_back({" no-vnni", kGemvMaxRows, false});
          paths.push_back({" f32-act", 0, vnni_detected()});
        }
        for (const Path& path : paths) {
          set_int8_gemv_rows(path.int8_rows);
          set_vnni(path.vnni);
          double sec = best_seconds(repeat, [&] { linear(&pool, x.data(), 1, K, W.data(), t, N, y.data(), N, Epilogue{}); });
          if (t == DType::BF16) bf16_seconds = sec;
          double gbs = double(W.size()) / sec / 1e9;
          std::printf("%-6s %-4s%-8s GEMV [%d,%d]: %.2f GB/s (%.0f%% of triad), %.2f× bf16's speed\n", simd_name(level),
                      dtype_name(t), path.name, N, K, gbs, 100 * gbs / bw, bf16_seconds / sec);
          ok = ok && std::fabs(y[0] - 0.5f * 0.25f * K) <= 1e-3f * K;
        }
        set_int8_gemv_rows(kGemvMaxRows);
        set_vnni(vnni_detected());
      }
    }
    // Which batch sizes should take the int8 GEMV: Q4_0 weights [N, K] at M tokens, the int8 GEMV (callable at any M:
    // tokens in groups of four) against what linear() would otherwise run (the f32 GEMV for M ≤ 4, the GEMM above).
    if (level != Simd::Scalar) {
      const int N = quick ? 256 : 2048, K = 2048;
      std::vector<uint8_t> W(bytes_of(DType::Q4_0, size_t(N) * K));
      const std::vector<float> row(K, 0.25f);
      for (int n = 0; n < N; ++n) quantize_row(row.data(), K, DType::Q4_0, W.data() + bytes_of(DType::Q4_0, size_t(n) * K));
      for (int M : {1, 2, 4, 8, 16}) {
        std::vector<float> X(size_t(M) * K, 0.5f), Y(size_t(M) * N);
        Q8Rows q8;
        double t8 = best_seconds(repeat, [&] {
          linear_gemv_q8(&pool, q8.quantize(X.data(), M, K), M, W.data(), DType::Q4_0, N, Y.data(), N, Epilogue{});
        });
        set_int8_gemv_rows(0);
        double tf = best_seconds(repeat, [&] { linear(&pool, X.data(), M, K, W.data(), DType::Q4_0, N, Y.data(), N, Epilogue{}); });
        set_int8_gemv_rows(kGemvMaxRows);
        std::printf("%-6s Q4_0 M=%-2d [%d,%d]: int8 GEMV %.3f ms, %s %.3f ms (int8 %.2f× faster)\n", simd_name(level), M, N,
                    K, 1e3 * t8, M <= kGemvMaxRows ? "f32 GEMV" : "GEMM", 1e3 * tf, tf / t8);
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
