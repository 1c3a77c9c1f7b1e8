// Every fast kernel against its reference twin on random inputs, in the manner of ggml's test-backend-ops:
// normalised MSE Σ(a−b)²/Σa² ≤ 1e-7 (bf16/f16 weights included: the twin widens the same weights, so only f32
// accumulation order differs; what narrowing costs is test_narrowing's), exact equality for the router and the
// grouping, a hard failure on any NaN, guard values around every output
// (an out-of-bounds write changes them), sizes that are not multiples of the vector width, 1 thread and several,
// and every SIMD level this CPU has.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../src/common/cpu.h"
#include "../src/common/threadpool.h"
#include "../src/kernels/kernel_table.h"
#include "../src/kernels/kernels.h"

using namespace dsmoe;

static int g_failures = 0, g_checks = 0;
static std::mt19937 rng(1234);

static std::vector<float> randn(size_t n, float scale = 1.f) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Weights of dtype t from f32 values: raw bits for bf16/f16, blocks for the quantized types.
struct Weights {
  DType t;
  std::vector<float> f;
  std::vector<uint16_t> h;
  std::vector<uint8_t> q;
  const void* data() const {
    return t == DType::F32 ? static_cast<const void*>(f.data()) : is_quantized(t) ? static_cast<const void*>(q.data()) : h.data();
  }
};
static Weights make_weights(size_t n, DType t, float scale = 1.f) {
  Weights w{t, randn(n, scale), {}, {}};
  if (is_quantized(t)) {
    w.q.resize(bytes_of(t, n));
    quantize_row(w.f.data(), int(n), t, w.q.data());  // rows of whole blocks: one long row is the same bytes
  } else if (t != DType::F32) {
    w.h.resize(n);
    for (size_t i = 0; i < n; ++i) w.h[i] = t == DType::BF16 ? f32_to_bf16(w.f[i]) : f32_to_f16(w.f[i]);
  }
  return w;
}

// An output buffer with guard values on both sides.
struct Guarded {
  static constexpr size_t G = 32;
  static constexpr float SENTINEL = 12345.678f;
  std::vector<float> buf;
  explicit Guarded(size_t n) : buf(n + 2 * G, 0.f) {
    for (size_t i = 0; i < G; ++i) buf[i] = buf[n + G + i] = SENTINEL;
  }
  float* data() { return buf.data() + G; }
  size_t n() const { return buf.size() - 2 * G; }
  bool guards_intact() const {
    for (size_t i = 0; i < G; ++i)
      if (buf[i] != SENTINEL || buf[buf.size() - 1 - i] != SENTINEL) return false;
    return true;
  }
};

static void check(const std::string& name, const float* ref, const float* got, size_t n, double tol, bool guards = true) {
  ++g_checks;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(got[i]) || std::isnan(ref[i])) {
      std::printf("FAIL %s: NaN at %zu\n", name.c_str(), i);
      ++g_failures;
      return;
    }
    double d = double(ref[i]) - got[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  double nmse = den > 0 ? num / den : num;
  if (!(nmse <= tol) || !guards) {
    std::printf("FAIL %s: nmse %.3e (tol %.1e)%s\n", name.c_str(), nmse, tol, guards ? "" : " guard values changed");
    ++g_failures;
  }
}

static const char* dn(DType t) { return dtype_name(t); }

// The AVX-512 level runs twice where the CPU has VNNI: with it, and with the AVX2 integer path it falls back to.
static std::vector<bool> vnni_modes(Simd level) {
  if (level == Simd::Avx512 && vnni_detected()) return {true, false};
  return {false};
}
static std::string path_name(Simd level) {
  return std::string(simd_name(level)) + (kernel_table().vnni ? "+vnni" : "");
}

// What the int8 GEMV is held to, per output of Y = X·Wᵀ (epilogue-free): `mag` = Σ_j |w_j · x̂_j| over the dequantized
// weights and the Q8 activations x̂ = d·q — the scale of the f32 rounding in a sum of exact integer block dots —
// and `shift` = Σ_j |w_j| · d_j / 2, the most that rounding each activation to its Q8 code (|x − x̂| ≤ d / 2) can
// move the output away from linear_ref's f32-activation product.
struct Int8Bounds {
  std::vector<double> mag, shift;
};
static Int8Bounds int8_bounds(const Q8Act& X, int M, const void* W, DType t, int N) {
  const int K = X.K;
  Int8Bounds b{std::vector<double>(size_t(M) * N), std::vector<double>(size_t(M) * N)};
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double mag = 0, shift = 0;
      for (int k = 0; k < K; ++k) {
        const double w = std::fabs(load_f32(W, t, size_t(n) * K + k)), d = X.d[size_t(m) * (K / 32) + k / 32];
        mag += w * d * std::abs(int(X.q[size_t(m) * K + k]));
        shift += w * d / 2;
      }
      b.mag[size_t(m) * N + n] = mag, b.shift[size_t(m) * N + n] = shift;
    }
  return b;
}
// |got − want| ≤ rel · scale + abs for every output, no NaN.
static void check_each(const std::string& name, const float* want, const float* got, const std::vector<double>& scale,
                       double rel, double abs, bool guards = true) {
  ++g_checks;
  double worst = 0;  // the largest |got − want| / (rel · scale + abs)
  for (size_t i = 0; i < scale.size(); ++i) {
    if (std::isnan(got[i])) worst = INFINITY;
    else worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / (rel * scale[i] + abs));
  }
  if (!(worst <= 1.0) || !guards) {
    std::printf("FAIL %s: error %.3g of the bound%s\n", name.c_str(), worst, guards ? "" : " guard values changed");
    ++g_failures;
  }
}

// ---------------------------------------------------------------------------------------------------------------

// The GEMM/GEMV sweep: every blocking boundary of linear() — K around the panel depth (kGemmKc = 256) and past two
// panels, M across the micro-kernel heights (mr = 4, 6, 8) and the GEMV/GEMM switch (M = 4/5), N leaving partial
// panels for every nr (8, 16, 32) — for every weight dtype, both epilogues, every ISA and 1 and 3 threads. The
// reference is computed once per case and every path is compared with it.
//
// Q8_0 / Q4_0 rows are whole 32-weight blocks, so their K are the multiples of 32 nearest the same boundaries (one
// block, just under / at / just over one panel, past eight panels), and Q3_A / Q2_A's (64-weight blocks) the
// multiples of 64; their twin is "dequantize to f32, then linear_ref" (load_f32 dequantizes element by element)
// and, as every path computes the same dequantized weights (dtype.h), the same 1e-7 holds.
static void test_linear_sweep(const std::vector<Simd>& levels, ThreadPool* pool3) {
  const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 129};
  struct Case { int M, K, N; };
  auto sweep = [&](std::vector<int> Ks, int K_small_panel) {
    std::vector<Case> cases;
    for (int K : Ks)
      for (int M : Ms) cases.push_back({M, K, 70});  // 70 = 2·32 + 6 = 4·16 + 6 = 8·8 + 6
    for (int M : {1, 7, 129}) cases.push_back({M, K_small_panel, 5});  // a single, partial panel
    return cases;
  };
  const std::vector<Case> plain = sweep({1, 255, 256, 257, 600, 2048, 2049}, 257);
  const std::vector<Case> blocked = sweep({32, 224, 256, 288, 608, 2048, 2080}, 288);
  const std::vector<Case> blocked64 = sweep({64, 192, 256, 320, 640, 2048, 2112}, 320);
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q3_A, DType::Q2_A})
    for (const Case& c : is_affine(t) ? blocked64 : is_quantized(t) ? blocked : plain) {
      const int M = c.M, K = c.K, N = c.N;
      Weights W = make_weights(size_t(N) * K, t, 0.5f);
      std::vector<float> X = randn(size_t(M) * K), bias = randn(N), scale = randn(M), init = randn(size_t(M) * N);
      std::vector<int32_t> scatter(M);
      for (int m = 0; m < M; ++m) scatter[m] = M - 1 - m;
      for (int variant = 0; variant < 2; ++variant) {
        Epilogue ep;
        if (variant == 1) {
          ep.bias = bias.data();
          ep.row_scale = scale.data();
          ep.scatter = scatter.data();
          ep.accumulate = true;
        }
        std::vector<float> ref = init;
        linear_ref(X.data(), M, K, W.data(), t, N, ref.data(), N, ep);
        // The int8 GEMV (quantized weights, M ≤ 4): its twin, the same integer dots summed in double.
        const bool int8 = is_quantized(t) && M <= int8_gemv_rows();
        Q8Rows q8;
        std::vector<float> ref8 = init;
        Int8Bounds bounds;
        if (int8) {
          const Q8Act xq = q8.quantize(X.data(), M, K);
          linear_q8_ref(xq, M, W.data(), t, N, ref8.data(), N, ep);
          if (variant == 0) bounds = int8_bounds(xq, M, W.data(), t, N);
        }
        for (Simd level : levels)
          for (bool vnni : vnni_modes(level)) {
            set_simd(level);
            set_vnni(vnni);
            for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), pool3}) {
              Guarded gv(size_t(M) * N), gm(size_t(M) * N);
              std::copy(init.begin(), init.end(), gv.data());
              std::copy(init.begin(), init.end(), gm.data());
              linear_gemv(pool, X.data(), M, K, W.data(), t, N, gv.data(), N, ep);
              linear_gemm(pool, X.data(), M, K, W.data(), t, N, gm.data(), N, ep);
              char name[160];
              std::snprintf(name, sizeof name, "linear gemv %s/%dt %s M=%d K=%d N=%d ep=%d", path_name(level).c_str(),
                            pool ? 3 : 1, dn(t), M, K, N, variant);
              if (!int8) {
                check(name, ref.data(), gv.data(), ref.size(), 1e-7, gv.guards_intact());
              } else if (variant == 0) {
                // Exact integer block dots; only f32 rounding of their scaled sum (≤ K/32 terms per lane) differs.
                check_each(std::string(name) + " vs int8 twin", ref8.data(), gv.data(), bounds.mag, 1e-6, 1e-30,
                           gv.guards_intact());
                // Against f32 activations: at most the activation rounding's shift, plus f32 rounding.
                check_each(std::string(name) + " vs f32 activations", ref.data(), gv.data(), bounds.shift, 1.0,
                           1e-5 * (*std::max_element(bounds.mag.begin(), bounds.mag.end())));
              } else {
                check(std::string(name) + " vs int8 twin", ref8.data(), gv.data(), ref8.size(), 1e-12, gv.guards_intact());
              }
              std::snprintf(name, sizeof name, "linear gemm %s/%dt %s M=%d K=%d N=%d ep=%d", path_name(level).c_str(),
                            pool ? 3 : 1, dn(t), M, K, N, variant);
              check(name, ref.data(), gm.data(), ref.size(), 1e-7, gm.guards_intact());
            }
          }
      }
    }
}

// The activation quantizer: codes in [−127, 127], each within half a step of its value (|x − d·q| ≤ d/2, up to
// one rounding of x / d), the block's largest |x| coded ±127, the sum the codes' sum, and an all-zero block coded
// as scale 0 and codes 0 (no division by zero).
static void test_quant_act() {
  const int K = 32 * 40;
  std::vector<float> x = randn(K, 3.f);
  for (int j = 64; j < 96; ++j) x[j] = 0.f;      // block 2 all zero
  for (int j = 96; j < 128; ++j) x[j] *= 1e-30f;  // block 3 tiny (subnormal-range products)
  std::vector<int8_t> q(K);
  std::vector<float> d(K / 32);
  std::vector<int32_t> sum(K / 32);
  quantize_act_row(x.data(), K, q.data(), d.data(), sum.data());
  bool ok = d[2] == 0.f && sum[2] == 0;
  for (int b = 0; b < K / 32; ++b) {
    int32_t s = 0, qmax = 0;
    for (int j = 0; j < 32; ++j) {
      const int v = q[size_t(b) * 32 + j];
      s += v, qmax = std::max(qmax, std::abs(v));
      ok &= v >= -127 && v <= 127;
      ok &= std::fabs(double(x[size_t(b) * 32 + j]) - double(d[b]) * v) <= double(d[b]) * (0.5 + 1e-6);
    }
    ok &= s == sum[b] && (b == 2 ? qmax == 0 : qmax == 127);
  }
  ++g_checks;
  if (!ok) {
    std::printf("FAIL quantize_act_row: codes out of range, off by more than half a step, or sums wrong\n");
    ++g_failures;
  }
}

// What quantizing the activations costs, on Gaussian activations and weights: a block's step is max|x| / 127 ≈
// 2.1σ/127 for 32 Gaussian values, so each activation moves by a uniform error of variance step²/12 ≈ 2.3e-5·σ², and
// an output of independent weights by the same nMSE ≈ 2.3e-5 (llama.cpp's Q8 activations cost the same). Bound
// 1e-4 for every format, every ISA, batches 1–4: the int8 GEMV against linear_ref on the same dequantized weights.
static void test_int8_error(const std::vector<Simd>& levels) {
  const int K = 640, N = 70;
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q3_A, DType::Q2_A})
    for (int M : {1, 4}) {
      Weights W = make_weights(size_t(N) * K, t, 0.5f);
      std::vector<float> X = randn(size_t(M) * K), ref(size_t(M) * N);
      linear_ref(X.data(), M, K, W.data(), t, N, ref.data(), N, Epilogue{});
      for (Simd level : levels)
        for (bool vnni : vnni_modes(level)) {
          set_simd(level);
          set_vnni(vnni);
          Guarded got(size_t(M) * N);
          linear(nullptr, X.data(), M, K, W.data(), t, N, got.data(), N, Epilogue{});
          char name[120];
          std::snprintf(name, sizeof name, "int8 GEMV %s %s M=%d vs f32 activations", path_name(level).c_str(), dn(t), M);
          check(name, ref.data(), got.data(), ref.size(), 1e-4, got.guards_intact());
        }
    }
  set_vnni(vnni_detected());
}

// The block layouts are GGUF's, byte for byte: hand-made blocks dequantize to the values llama.cpp gives them.
static void test_quant_layout() {
  uint8_t q8[34], q4[18];
  const uint16_t half = 0x3800;  // f16 0.5
  std::memcpy(q8, &half, 2);
  std::memcpy(q4, &half, 2);
  for (int j = 0; j < 32; ++j) q8[2 + j] = uint8_t(int8_t(j - 16));
  for (int j = 0; j < 16; ++j) q4[2 + j] = uint8_t(j | (15 - j) << 4);
  bool ok8 = true, ok4 = true;
  for (int j = 0; j < 32; ++j) ok8 &= load_f32(q8, DType::Q8_0, j) == 0.5f * float(j - 16);
  for (int j = 0; j < 16; ++j) {
    ok4 &= load_f32(q4, DType::Q4_0, j) == 0.5f * float(j - 8);
    ok4 &= load_f32(q4, DType::Q4_0, j + 16) == 0.5f * float(7 - j);
  }
  ++g_checks;
  if (!ok8 || !ok4) {
    std::printf("FAIL quantized block layout (q8_0 %s, q4_0 %s)\n", ok8 ? "ok" : "wrong", ok4 ? "ok" : "wrong");
    ++g_failures;
  }
  // quantize_row follows ggml's reference rounding: a block of x[j] = j − 16 gives Q4_0 scale −16/−8 = 2 and
  // nibbles min(15, ⌊x/2 + 8.5⌋), Q8_0 scale 16/127 and q = round(x · 127/16).
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = float(j - 16);
  quantize_row(x, 32, DType::Q4_0, q4);
  quantize_row(x, 32, DType::Q8_0, q8);
  bool okq = block_scale_bits(q4) == f32_to_f16(2.f) && block_scale_bits(q8) == f32_to_f16(16.f / 127.f);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(float(j - 16) / 2.f + 8.5f)), hi = std::min(15, int(float(j) / 2.f + 8.5f));
    okq &= q4[2 + j] == uint8_t(lo | hi << 4);
  }
  for (int j = 0; j < 32; ++j) okq &= int8_t(q8[2 + j]) == int8_t(std::lround(float(j - 16) * (127.f / 16.f)));
  ++g_checks;
  if (!okq) {
    std::printf("FAIL quantize_row does not match ggml's reference rounding\n");
    ++g_failures;
  }
}

// The Q3_A / Q2_A layouts of dtype.h, from hand-made blocks: weight j of a block with scale 0.5 and offset −1 and
// codes q[j] = j % 8 (Q3_A) or j % 4 (Q2_A) is 0.5·q[j] − 1, through load_f32 and through every ISA's widening.
// And quantize_row codes a block whose weights sit exactly on the levels of its min–max range without error.
static void test_affine_layout(const std::vector<Simd>& levels) {
  uint8_t q3[2 * 28] = {}, q2[2 * 20] = {};  // two blocks each; the second repeats the first with the scale 1
  const uint16_t scale[2] = {0x3800, 0x3c00}, offset = 0xbc00;  // f16 0.5 and 1, −1
  for (int b = 0; b < 2; ++b) {
    uint8_t* B3 = q3 + 28 * b;
    uint8_t* B2 = q2 + 20 * b;
    std::memcpy(B3, &scale[b], 2), std::memcpy(B3 + 2, &offset, 2);
    std::memcpy(B2, &scale[b], 2), std::memcpy(B2 + 2, &offset, 2);
    for (int j = 0; j < 64; ++j) {
      const int c3 = j % 8, c2 = j % 4;
      B3[4 + j % 16] |= uint8_t((c3 & 3) << (2 * (j / 16)));
      B3[20 + j / 8] |= uint8_t((c3 >> 2) << (j % 8));
      B2[4 + j % 16] |= uint8_t(c2 << (2 * (j / 16)));
    }
  }
  bool ok = true;
  for (int i = 0; i < 128; ++i) {
    const float s = i < 64 ? 0.5f : 1.f;
    ok &= load_f32(q3, DType::Q3_A, size_t(i)) == s * float(i % 8) - 1.f;
    ok &= load_f32(q2, DType::Q2_A, size_t(i)) == s * float(i % 4) - 1.f;
  }
  for (Simd level : levels) {
    set_simd(level);
    float w3[128], w2[128];
    kernel_table().widen_row[int(DType::Q3_A)](q3, 0, 128, w3);
    kernel_table().widen_row[int(DType::Q2_A)](q2, 0, 128, w2);
    for (int i = 0; i < 128; ++i) ok &= w3[i] == load_f32(q3, DType::Q3_A, size_t(i)) && w2[i] == load_f32(q2, DType::Q2_A, size_t(i));
  }
  ++g_checks;
  if (!ok) {
    std::printf("FAIL Q3_A / Q2_A block layout\n");
    ++g_failures;
  }
  float x[64];
  for (int j = 0; j < 64; ++j) x[j] = 0.25f * float((j * 5) % 8) - 0.75f;  // levels of d = 0.25, m = −0.75, 8 codes
  uint8_t out[28];
  quantize_row(x, 64, DType::Q3_A, out);
  bool exact = block_scale_bits(out) == f32_to_f16(0.25f) && block_offset_bits(out) == f32_to_f16(-0.75f);
  for (int j = 0; j < 64; ++j) exact &= load_f32(out, DType::Q3_A, size_t(j)) == x[j];
  for (int j = 0; j < 64; ++j) x[j] = 2.f * float(j % 4) - 3.f;  // d = 2, m = −3, 4 codes
  quantize_row(x, 64, DType::Q2_A, out);
  for (int j = 0; j < 64; ++j) exact &= load_f32(out, DType::Q2_A, size_t(j)) == x[j];
  ++g_checks;
  if (!exact) {
    std::printf("FAIL quantize_row Q3_A / Q2_A does not code on-level weights exactly\n");
    ++g_failures;
  }
}

// What quantizing costs, against the f32 product (Gaussian weights): Q8_0's step is a block's max |w| / 127 (nMSE
// ≈ step²/12/σ² ≈ 3e-5), Q4_0's a block's max |w| / 8 (≈ 1e-2). Q3_A's and Q2_A's are the chosen clipped range over
// 7 and 3 (measured here 2.5e-2 and 1.05e-1; 3.5e-2 and 1.8e-1 with the min–max range alone). Bounds 1e-4, 3e-2,
// 4e-2 and 0.15, and each format must add more error than the next wider one.
static void test_quant_error(const std::vector<Simd>& levels) {
  const int M = 3, K = 640, N = 70;
  set_int8_gemv_rows(0);  // the weights' error alone: activations in f32 (test_int8_error has theirs)
  Weights W32 = make_weights(size_t(N) * K, DType::F32, 0.5f);
  std::vector<float> X = randn(size_t(M) * K), ref(size_t(M) * N);
  linear_ref(X.data(), M, K, W32.data(), DType::F32, N, ref.data(), N, Epilogue{});
  const struct { DType t; double bound; } formats[] = {
      {DType::Q8_0, 1e-4}, {DType::Q4_0, 3e-2}, {DType::Q3_A, 4e-2}, {DType::Q2_A, 0.15}};
  for (Simd level : levels) {
    double wider = 0;  // the previous (wider) format's nMSE
    for (const auto& f : formats) {
      std::vector<uint8_t> q(bytes_of(f.t, W32.f.size()));
      quantize_row(W32.f.data(), int(W32.f.size()), f.t, q.data());
      set_simd(level);
      Guarded got(size_t(M) * N);
      linear(nullptr, X.data(), M, K, q.data(), f.t, N, got.data(), N, Epilogue{});
      char name[120];
      std::snprintf(name, sizeof name, "quantized weights %s %s vs f32", simd_name(level), dn(f.t));
      check(name, ref.data(), got.data(), ref.size(), f.bound, got.guards_intact());
      double num = 0, den = 0;
      for (size_t i = 0; i < ref.size(); ++i) num += (double(ref[i]) - got.data()[i]) * (double(ref[i]) - got.data()[i]), den += double(ref[i]) * ref[i];
      ++g_checks;
      if (!(num / den > wider)) {
        std::printf("FAIL %s: nMSE %.3e not above the wider format's %.3e\n", name, num / den, wider);
        ++g_failures;
      }
      wider = num / den;
    }
  }
  set_int8_gemv_rows(kGemvMaxRows);
}

// What narrowing the weights costs (the bounds kernels.h states): the fast product over bf16/f16 weights against
// the reference over the original f32 weights.
static void test_narrowing(const std::vector<Simd>& levels) {
  const int M = 8, K = 600, N = 70;
  Weights W32 = make_weights(size_t(N) * K, DType::F32, 0.5f);
  std::vector<float> X = randn(size_t(M) * K), ref(size_t(M) * N);
  linear_ref(X.data(), M, K, W32.data(), DType::F32, N, ref.data(), N, Epilogue{});
  for (DType t : {DType::BF16, DType::F16}) {
    std::vector<uint16_t> narrow(W32.f.size());
    for (size_t i = 0; i < narrow.size(); ++i) narrow[i] = t == DType::BF16 ? f32_to_bf16(W32.f[i]) : f32_to_f16(W32.f[i]);
    for (Simd level : levels) {
      set_simd(level);
      Guarded got(size_t(M) * N);
      linear(nullptr, X.data(), M, K, narrow.data(), t, N, got.data(), N, Epilogue{});
      char name[120];
      std::snprintf(name, sizeof name, "narrowed weights %s %s vs f32", simd_name(level), dn(t));
      check(name, ref.data(), got.data(), ref.size(), t == DType::BF16 ? 1e-5 : 2e-7, got.guards_intact());
    }
  }
}

// The training GEMM: every transpose combination at shapes crossing its blocking (mr and the 128-row tile in M, nr
// and the 256-column tile in N, kGemmKc = 256 in K), batches with and without broadcast entries (index arrays), and
// the output written in place with guards around it.
static void test_gemm(ThreadPool* pool, const char* level) {
  struct Shape {
    int M, N, K;
  };
  const Shape shapes[] = {{1, 19, 23}, {6, 19, 23}, {13, 1, 5}, {9, 33, 255}, {129, 17, 257}, {17, 257, 64}, {130, 40, 513}};
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (const Shape& s : shapes) {
        std::vector<float> A = randn(size_t(s.M) * s.K), B = randn(size_t(s.K) * s.N);
        Guarded ref(size_t(s.M) * s.N), got(size_t(s.M) * s.N);
        gemm_ref(A.data(), B.data(), ref.data(), s.M, s.N, s.K, ta, tb);
        gemm(pool, A.data(), B.data(), got.data(), s.M, s.N, s.K, ta, tb);
        char name[120];
        std::snprintf(name, sizeof name, "gemm %s M=%d N=%d K=%d ta=%d tb=%d", level, s.M, s.N, s.K, ta, tb);
        check(name, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
      }
  // Batches: 5 entries, A read through an index (entries 2, 0, 1, 1, 2 of 3), B entry by entry; then the other way.
  const int32_t index[5] = {2, 0, 1, 1, 2};
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int which = 0; which < 2; ++which) {
        const int M = 11, N = 37, K = 20, count = 5;
        GemmBatch batch{count, which == 0 ? index : nullptr, which == 1 ? index : nullptr};
        std::vector<float> A = randn(size_t(which == 0 ? 3 : count) * M * K), B = randn(size_t(which == 1 ? 3 : count) * K * N);
        Guarded ref(size_t(count) * M * N), got(size_t(count) * M * N);
        gemm_ref(A.data(), B.data(), ref.data(), M, N, K, ta, tb, batch);
        gemm(pool, A.data(), B.data(), got.data(), M, N, K, ta, tb, batch);
        char name[120];
        std::snprintf(name, sizeof name, "gemm batch %s ta=%d tb=%d index on %s", level, ta, tb, which == 0 ? "A" : "B");
        check(name, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
      }
  {  // the reference twin itself against a hand-computed product: [[1,2],[3,4]] · [[5,6],[7,8]] = [[19,22],[43,50]]
    const float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, want[4] = {19, 22, 43, 50};
    float C[4];
    gemm_ref(A, B, C, 2, 2, 2, false, false);
    check(std::string("gemm_ref by hand ") + level, want, C, 4, 0);
  }
}

static void test_small_kernels(ThreadPool* pool, const char* level) {
  char name[120];
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {  // embedding
    int V = 11, d = 37, T = 9;
    Weights W = make_weights(size_t(V) * d, t);
    std::vector<int32_t> ids(T);
    for (int i = 0; i < T; ++i) ids[i] = (i * 7) % V;
    Guarded ref(size_t(T) * d), got(size_t(T) * d);
    embedding_ref(W.data(), t, d, ids.data(), T, ref.data());
    embedding(pool, W.data(), t, d, ids.data(), T, got.data());
    std::snprintf(name, sizeof name, "embedding %s %s", level, dn(t));
    check(name, ref.data(), got.data(), ref.n(), 0, got.guards_intact());
  }
  for (int d : {1, 7, 64, 77}) {  // rmsnorm
    int T = 5;
    std::vector<float> x = randn(size_t(T) * d), w = randn(d);
    Guarded ref(size_t(T) * d), got(size_t(T) * d);
    rmsnorm_ref(x.data(), w.data(), T, d, 1e-6f, ref.data());
    rmsnorm(pool, x.data(), w.data(), T, d, 1e-6f, got.data());
    std::snprintf(name, sizeof name, "rmsnorm %s d=%d", level, d);
    check(name, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
  }
  {  // rope
    int T = 6, heads = 3, hd = 10;
    std::vector<float> x = randn(size_t(T) * heads * hd);
    std::vector<int32_t> pos = {0, 1, 5, 17, 100, 2047};
    std::vector<float> ref = x, got = x;
    rope_ref(ref.data(), T, heads, hd, pos.data(), 10000.f);
    rope(pool, got.data(), T, heads, hd, pos.data(), 10000.f);
    std::snprintf(name, sizeof name, "rope %s", level);
    check(name, ref.data(), got.data(), ref.size(), 1e-7);
  }
  for (int hd : {8, 13, 32}) {  // attention: GQA, two slots, prefill and decode positions mixed
    int H = 4, KV = 2, S = 2, C = 40, T = 5;
    std::vector<float> q = randn(size_t(T) * H * hd), kc = randn(size_t(S) * C * KV * hd), vc = randn(size_t(S) * C * KV * hd);
    std::vector<int32_t> slot = {0, 0, 1, 1, 0}, pos = {0, 1, 30, 39, 2};
    AttentionShape s{H, KV, hd, size_t(C) * KV * hd};
    Guarded ref(size_t(T) * H * hd), got(size_t(T) * H * hd);
    attention_ref(q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, s, ref.data());
    attention(pool, q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, s, got.data());
    std::snprintf(name, sizeof name, "attention %s hd=%d", level, hd);
    check(name, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
  }
  for (int hd : {13, 64}) {  // prefill runs (≥ 16 tokens of one slot) take the GEMM path; short runs and decode the items
    int H = 6, KV = 2, S = 3, C = 96;
    std::vector<int32_t> slot, pos;
    for (int p = 0; p < 40; ++p) slot.push_back(0), pos.push_back(p);       // a prompt from position 0
    for (int p = 0; p < 5; ++p) slot.push_back(1), pos.push_back(60 + p);  // a short run: per item
    for (int p = 0; p < 23; ++p) slot.push_back(2), pos.push_back(70 + p); // a continued prompt, positions 70..92
    slot.push_back(0), pos.push_back(40);                                   // a decode token
    const int T = int(slot.size());
    std::vector<float> q = randn(size_t(T) * H * hd), kc = randn(size_t(S) * C * KV * hd), vc = randn(size_t(S) * C * KV * hd);
    AttentionShape s{H, KV, hd, size_t(C) * KV * hd};
    Guarded ref(size_t(T) * H * hd), got(size_t(T) * H * hd);
    attention_ref(q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, s, ref.data());
    attention(pool, q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, s, got.data());
    std::snprintf(name, sizeof name, "attention prefill runs %s hd=%d", level, hd);
    check(name, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
  }
  {  // attention with a head mask (MoA): marked (token, head) pairs equal the unmasked result, the others untouched
    int H = 4, KV = 2, S = 2, C = 40, T = 5, hd = 13;
    std::vector<float> q = randn(size_t(T) * H * hd), kc = randn(size_t(S) * C * KV * hd), vc = randn(size_t(S) * C * KV * hd);
    std::vector<int32_t> slot = {0, 0, 1, 1, 0}, pos = {0, 1, 30, 39, 2};
    std::vector<uint8_t> active(size_t(T) * H);
    for (size_t i = 0; i < active.size(); ++i) active[i] = uint8_t((i * 7 + 3) % 5 < 3);
    AttentionShape all{H, KV, hd, size_t(C) * KV * hd};
    AttentionShape masked = all;
    masked.active = active.data();
    std::vector<float> full(size_t(T) * H * hd);
    attention_ref(q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, all, full.data());
    const float sentinel = 12345.f;
    for (int fast = 0; fast < 2; ++fast) {
      Guarded out(full.size());
      std::fill(out.data(), out.data() + out.n(), sentinel);
      if (fast) attention(pool, q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, masked, out.data());
      else attention_ref(q.data(), kc.data(), vc.data(), slot.data(), pos.data(), T, masked, out.data());
      std::vector<float> want, got;  // the marked pairs' values, compared with the unmasked result
      size_t touched = 0;            // unmarked values that changed
      for (size_t i = 0; i < full.size(); ++i) {
        if (active[i / hd]) want.push_back(full[i]), got.push_back(out.data()[i]);
        else touched += out.data()[i] != sentinel;
      }
      std::snprintf(name, sizeof name, "attention masked %s %s", fast ? "fast" : "ref", level);
      check(name, want.data(), got.data(), want.size(), fast ? 1e-7 : 0, out.guards_intact() && touched == 0 && !want.empty());
    }
  }
  {  // combine: rows hit the same token more than once
    int R = 11, d = 37, T = 4;
    std::vector<float> out = randn(size_t(R) * d), init = randn(size_t(T) * d);
    std::vector<int32_t> rows = {0, 1, 2, 3, 0, 1, 2, 3, 0, 2, 3};
    Guarded ref(size_t(T) * d), got(size_t(T) * d);
    std::copy(init.begin(), init.end(), ref.data());
    std::copy(init.begin(), init.end(), got.data());
    combine_ref(out.data(), rows.data(), R, d, ref.data());
    combine(pool, out.data(), rows.data(), R, d, got.data());
    check(std::string("combine ") + level, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
  }
  {  // swiglu
    int n = 3, I = 19;
    std::vector<float> gu = randn(size_t(n) * 2 * I);
    Guarded ref(size_t(n) * I), got(size_t(n) * I);
    swiglu_ref(gu.data(), n, I, ref.data());
    swiglu(gu.data(), n, I, got.data());
    check(std::string("swiglu ") + level, ref.data(), got.data(), ref.n(), 1e-7, got.guards_intact());
  }
}

// Routed experts: top-k routing over random probabilities, then the fast grouped path against the per-token
// reference, for token counts that hit the GEMV (≤ 4 per expert) and GEMM paths.
static void test_moe(ThreadPool* pool, const char* level) {
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q3_A, DType::Q2_A})
    for (int T : {1, 4, 5, 17, 32, 129}) {
      // quantized rows are whole blocks: d and I multiples of 32 (Q3_A / Q2_A: of 64)
      int E = 6, d = is_quantized(t) ? 64 : 40, I = is_affine(t) ? 192 : is_quantized(t) ? 96 : 27, k = 2;
      std::vector<int32_t> slot_of = {0, 1, -1, 2, 3, 4};  // expert 2 pruned
      std::vector<uint8_t> allowed = {1, 1, 0, 1, 1, 1};
      int K = 5;
      Weights gu = make_weights(size_t(K) * 2 * I * d, t, 0.2f), dw = make_weights(size_t(K) * d * I, t, 0.2f);
      std::vector<float> x = randn(size_t(T) * d), logits = randn(size_t(T) * E);
      softmax_rows(logits.data(), T, E);
      SelectRule rule;
      rule.mode = SelectMode::TopK;
      rule.k = k;
      rule.allowed = allowed.data();
      std::vector<int32_t> ids(size_t(T) * E), count(T), ecount(E), offsets(E + 1), rows(size_t(T) * E);
      std::vector<float> w(size_t(T) * E), roww(size_t(T) * E);
      int total = select_experts(logits.data(), T, E, rule, E, ids.data(), w.data(), count.data());
      ++g_checks;
      if (total != T * k) {
        std::printf("FAIL select total %d != %d\n", total, T * k);
        ++g_failures;
      }
      group_by_expert(ids.data(), w.data(), count.data(), T, E, E, ecount.data(), offsets.data(), rows.data(), roww.data());
      ExpertWeights ew{gu.data(), dw.data(), t, d, I, slot_of.data()};
      Guarded ref(size_t(T) * d), got(size_t(T) * d);
      moe_ffn_ref(x.data(), T, ew, E, offsets.data(), rows.data(), roww.data(), ref.data());
      moe_ffn(pool, x.data(), T, ew, E, offsets.data(), rows.data(), roww.data(), got.data());
      char name[120];
      std::snprintf(name, sizeof name, "moe_ffn %s %s T=%d", level, dn(t), T);
      // Quantized experts with ≤ 4 rows take the int8 GEMV, as the twin does; but the twin's SwiGLU input comes from
      // double sums, so now and then one of h's Q8 codes rounds the other way and moves the outputs by one step of
      // its block (|w|·max|h|/127): measured nMSE up to 1.3e-6, against ~2e-5 for quantizing the activations at all.
      check(name, ref.data(), got.data(), ref.n(), is_quantized(t) ? 1e-5 : 1e-7, got.guards_intact());
    }
}

// The experts' partition into work items (blocks of ≈ kGemvItemBytes of weight rows, any thread) against running
// each expert whole on one thread (linear per expert, the GEMV path: ≤ 4 tokens per expert): every output row goes
// through the same kernel calls in the same order, so the results must be equal bit for bit. Also with one scratch
// reused across calls of different sizes (moe_ffn keeps its buffers; stale contents must not leak into a result),
// and at shapes whose rows split into several items (d large enough for several blocks per expert).
static void test_moe_partition(ThreadPool* pool, const char* level) {
  MoeScratch scratch;
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0})
    for (int T : {4, 1, 3, 2}) {  // largest first: later calls reuse bigger buffers
      const int E = 5, d = 1024, I = 96, k = 2;  // d rows of I: down blocks of several items per expert
      std::vector<int32_t> slot_of = {0, 1, 2, 3, 4};
      Weights gu = make_weights(size_t(E) * 2 * I * d, t, 0.2f), dw = make_weights(size_t(E) * d * I, t, 0.2f);
      std::vector<float> x = randn(size_t(T) * d), logits = randn(size_t(T) * E);
      softmax_rows(logits.data(), T, E);
      SelectRule rule;
      rule.mode = SelectMode::TopK;
      rule.k = k;
      std::vector<int32_t> ids(size_t(T) * E), count(T), ecount(E), offsets(E + 1), rows(size_t(T) * E);
      std::vector<float> w(size_t(T) * E), roww(size_t(T) * E);
      select_experts(logits.data(), T, E, rule, E, ids.data(), w.data(), count.data());
      group_by_expert(ids.data(), w.data(), count.data(), T, E, E, ecount.data(), offsets.data(), rows.data(), roww.data());
      ExpertWeights ew{gu.data(), dw.data(), t, d, I, slot_of.data()};
      // Per expert, whole: gather, gate+up, SwiGLU, down with the routing weight, then combine in row order.
      const int R = offsets[E];
      std::vector<float> xs(size_t(R) * d), g(size_t(R) * 2 * I), hh(size_t(R) * I), out(size_t(R) * d);
      for (int r = 0; r < R; ++r) std::copy_n(x.data() + size_t(rows[r]) * d, d, xs.data() + size_t(r) * d);
      for (int e = 0; e < E; ++e) {
        const int off = offsets[e], n = offsets[e + 1] - off;
        if (n == 0) continue;
        const char* Wgu = static_cast<const char*>(gu.data()) + bytes_of(t, size_t(e) * 2 * I * d);
        const char* Wd = static_cast<const char*>(dw.data()) + bytes_of(t, size_t(e) * d * I);
        linear(nullptr, xs.data() + size_t(off) * d, n, d, Wgu, t, 2 * I, g.data() + size_t(off) * 2 * I, 2 * I, Epilogue{});
        swiglu(g.data() + size_t(off) * 2 * I, n, I, hh.data() + size_t(off) * I);
        Epilogue ep;
        ep.row_scale = roww.data() + off;
        linear(nullptr, hh.data() + size_t(off) * I, n, I, Wd, t, d, out.data() + size_t(off) * d, d, ep);
      }
      std::vector<float> whole(size_t(T) * d, 0.f);
      combine_ref(out.data(), rows.data(), R, d, whole.data());
      for (int use_scratch = 0; use_scratch < 2; ++use_scratch) {
        Guarded got(size_t(T) * d);
        moe_ffn(pool, x.data(), T, ew, E, offsets.data(), rows.data(), roww.data(), got.data(), use_scratch ? &scratch : nullptr);
        ++g_checks;
        if (!got.guards_intact() || std::memcmp(got.data(), whole.data(), whole.size() * sizeof(float)) != 0) {
          size_t i = 0;
          while (i < whole.size() && got.data()[i] == whole[i]) ++i;
          std::printf("FAIL moe_ffn partition %s %s T=%d scratch=%d: differs from per-expert at %zu\n", level, dn(t), T,
                      use_scratch, i);
          ++g_failures;
        }
      }
    }
}

// Selection rules (design.md §1) on hand-made rows.
static void test_select() {
  auto run = [](const std::vector<float>& p, SelectRule rule, std::vector<int> want) {
    int E = int(p.size());
    std::vector<int32_t> ids(E), count(1);
    std::vector<float> w(E);
    select_experts(p.data(), 1, E, rule, E, ids.data(), w.data(), count.data());
    ++g_checks;
    std::vector<int> got(ids.begin(), ids.begin() + count[0]);
    if (got != want) {
      std::printf("FAIL select: got");
      for (int g : got) std::printf(" %d", g);
      std::printf(", want");
      for (int g : want) std::printf(" %d", g);
      std::printf("\n");
      ++g_failures;
    }
  };
  SelectRule topk;
  topk.mode = SelectMode::TopK;
  topk.k = 2;
  run({0.1f, 0.3f, 0.3f, 0.3f}, topk, {1, 2});  // ties → lower index
  SelectRule th;
  th.mode = SelectMode::Threshold;
  th.epsilon = 1.0f;  // keep E·p > 1, i.e. p > 1/4
  run({0.1f, 0.4f, 0.3f, 0.2f}, th, {1, 2});
  run({0.25f, 0.25f, 0.25f, 0.25f}, th, {0});  // none passes: arg-max kept
  th.k_max = 1;
  run({0.1f, 0.4f, 0.3f, 0.2f}, th, {1});
  std::vector<uint8_t> allowed = {1, 0, 1, 1};
  topk.allowed = allowed.data();
  run({0.1f, 0.4f, 0.3f, 0.2f}, topk, {2, 3});  // pruned expert 1 never selected
}

// The router's and the grouping's fast forms against their twins: exact equality (same ids, same order, same
// weights), over probabilities quantised to a few levels so that ties are common, every rule, pruning, caps.
static void test_router_twins() {
  {
    const int T = 7;
    for (int E : {1, 8, 60}) {
      std::vector<float> x = randn(size_t(T) * E, 3.f), ref = x, got = x;
      softmax_rows_ref(ref.data(), T, E);
      softmax_rows(got.data(), T, E);
      check("softmax_rows E=" + std::to_string(E), ref.data(), got.data(), ref.size(), 1e-12);
    }
  }
  std::uniform_int_distribution<int> level(0, 5);
  for (int E : {1, 4, 16, 64})
    for (int trial = 0; trial < 20; ++trial) {
      const int T = 9;
      std::vector<float> p(size_t(T) * E);
      for (auto& v : p) v = float(level(rng)) / 5.f;  // not normalised: the rules only compare and scale
      std::vector<uint8_t> allowed(E);
      for (int e = 0; e < E; ++e) allowed[e] = (e * 7 + trial) % 5 != 0;
      SelectRule rule;
      rule.mode = SelectMode(trial % 3);
      rule.k = 1 + trial % 4;
      rule.epsilon = float(trial % 4) * 0.5f;
      rule.k_max = trial % 5;
      rule.renormalize = trial % 2;
      rule.allowed = trial % 3 == 1 ? allowed.data() : nullptr;
      const int cap = std::max(1, E - trial % 3);
      std::vector<int32_t> ids_r(size_t(T) * cap, -1), ids_f(size_t(T) * cap, -1), cnt_r(T), cnt_f(T);
      std::vector<float> w_r(size_t(T) * cap, 0.f), w_f(size_t(T) * cap, 0.f);
      int tot_r = select_experts_ref(p.data(), T, E, rule, cap, ids_r.data(), w_r.data(), cnt_r.data());
      int tot_f = select_experts(p.data(), T, E, rule, cap, ids_f.data(), w_f.data(), cnt_f.data());
      ++g_checks;
      if (tot_r != tot_f || ids_r != ids_f || cnt_r != cnt_f || w_r != w_f) {
        std::printf("FAIL select_experts twin E=%d trial=%d\n", E, trial);
        ++g_failures;
      }
      std::vector<int32_t> ec_r(E), ec_f(E), off_r(E + 1), off_f(E + 1), rows_r(tot_r), rows_f(tot_r);
      std::vector<float> rw_r(tot_r), rw_f(tot_r);
      group_by_expert_ref(ids_r.data(), w_r.data(), cnt_r.data(), T, cap, E, ec_r.data(), off_r.data(), rows_r.data(), rw_r.data());
      group_by_expert(ids_r.data(), w_r.data(), cnt_r.data(), T, cap, E, ec_f.data(), off_f.data(), rows_f.data(), rw_f.data());
      ++g_checks;
      if (ec_r != ec_f || off_r != off_f || rows_r != rows_f || rw_r != rw_f) {
        std::printf("FAIL group_by_expert twin E=%d trial=%d\n", E, trial);
        ++g_failures;
      }
    }
}

// linear()'s three paths at the batch sizes that pick them (M ≤ 4 GEMV, ≤ gemv_chunk_rows() the GEMV over chunks of
// 4 rows, beyond it the GEMM), with every epilogue field at once — bias, per-row scale, scattered rows, accumulate —
// so a chunk that took its rows' scale or scatter entries from the wrong offset fails; and with the chunked path
// switched off (set_gemv_chunk_rows(4)) the same M goes to the GEMM and must agree as well.
static void test_gemv_chunks(const std::vector<Simd>& levels, ThreadPool* pool) {
  const int K = 96, N = 37;
  for (DType t : {DType::F32, DType::BF16, DType::Q4_0})
    for (int M : {3, 5, 11, 16, 17}) {
      Weights W = make_weights(size_t(N) * K, t, 0.5f);
      std::vector<float> X = randn(size_t(M) * K), bias = randn(N), scale = randn(M);
      std::vector<int32_t> scatter(M);
      for (int m = 0; m < M; ++m) scatter[m] = (m * 7 + 3) % (M + 2);  // distinct rows of a [M + 2, N] Y
      Epilogue ep;
      ep.bias = bias.data();
      ep.row_scale = scale.data();
      ep.scatter = scatter.data();
      ep.accumulate = true;
      const std::vector<float> start = randn(size_t(M + 2) * N);
      std::vector<float> ref = start;
      set_int8_gemv_rows(0);  // f32 activations everywhere, so that the twin is linear_ref
      linear_ref(X.data(), M, K, W.data(), t, N, ref.data(), N, ep);
      for (Simd level : levels)
        for (int chunkRows : {kGemvMaxRows, kGemvChunkMaxRows, 16}) {
          set_simd(level);
          set_gemv_chunk_rows(chunkRows);
          Guarded got(start.size());
          std::copy(start.begin(), start.end(), got.data());
          linear(pool, X.data(), M, K, W.data(), t, N, got.data(), N, ep);
          char name[120];
          std::snprintf(name, sizeof name, "linear %s %s M=%d, chunked GEMV up to %d rows, full epilogue", path_name(level).c_str(), dn(t), M,
                        chunkRows);
          check(name, ref.data(), got.data(), ref.size(), 1e-7, got.guards_intact());
        }
    }
  set_gemv_chunk_rows(kGemvChunkMaxRows);
  set_int8_gemv_rows(kGemvMaxRows);
}

int main() {
  std::vector<Simd> levels = {Simd::Scalar};
  if (simd_detected() >= Simd::Avx2 && simd_detected() != Simd::Neon) levels.push_back(Simd::Avx2);
  if (simd_detected() == Simd::Avx512) levels.push_back(Simd::Avx512);
  ThreadPool pool3(3);
  for (Simd level : levels)
    for (bool vnni : vnni_modes(level)) {
      set_simd(level);
      set_vnni(vnni);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool3}) {
        std::string tag = path_name(level) + (pool ? "/3t" : "/1t");
        if (!vnni) test_gemm(pool, tag.c_str());  // VNNI changes only the int8 GEMV
        if (!vnni) test_small_kernels(pool, tag.c_str());
        test_moe(pool, tag.c_str());
        test_moe_partition(pool, tag.c_str());
      }
    }
  set_vnni(vnni_detected());
  test_linear_sweep(levels, &pool3);
  set_vnni(vnni_detected());
  test_quant_act();
  test_int8_error(levels);
  test_gemv_chunks(levels, &pool3);
  test_quant_layout();
  test_affine_layout(levels);
  test_quant_error(levels);
  test_narrowing(levels);
  test_router_twins();
  test_select();
  std::printf("%d checks, %d failures (levels:", g_checks, g_failures);
  for (Simd l : levels) std::printf(" %s", simd_name(l));
  std::printf("%s)\n", vnni_detected() ? ", avx512 with and without vnni" : "");
  return g_failures ? 1 : 0;
}
