// Y = X·Wᵀ over f32/bf16/f16 and quantized weights: the GEMV path for decode (weights streamed once per call,
// memory-bound; over quantized weights, int8 dot products with X quantized to Q8 blocks),
// the packed GEMM path for prefill and busy experts (compute-bound, register-blocked micro-kernel). The drivers
// here own threading and blocking; the ISA-specific bodies come from the kernel table (kernel_table.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "../common/threadpool.h"
#include "kernel_table.h"
#include "kernels.h"

namespace dsmoe {

// ---------------------------------------------------------------------------------------------------------------
// Reference: one dot product per output, double accumulation.

void linear_ref(const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy, const Epilogue& ep) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) acc += double(X[size_t(m) * K + k]) * load_f32(W, wt, size_t(n) * K + k);
      store_out(float(acc), m, n, Y, ldy, ep);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Activation quantization (kernels.h): ggml's quantize_row_q8_0 with an f32 scale and the code sum kept.

void quantize_act_row(const float* x, int K, int8_t* q, float* d, int32_t* sum) {
  for (int b = 0; b < K / 32; ++b) {
    const float* xb = x + size_t(b) * 32;
    float amax = 0.f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float scale = amax / 127.f, inv = scale > 0.f ? 1.f / scale : 0.f;
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) {  // |x·inv| ≤ 127 up to rounding; the clamp keeps a code in int8 regardless
      const int v = std::min(127, std::max(-127, int(std::lrint(xb[j] * inv))));
      q[size_t(b) * 32 + j] = int8_t(v);
      s += v;
    }
    d[b] = scale;
    sum[b] = s;
  }
}

Q8Rows::~Q8Rows() { std::free(q); std::free(d); std::free(sum); }

Q8Act Q8Rows::quantize(const float* X, int M, int K) {
  const size_t n = size_t(M) * K;
  if (n > capacity) {
    std::free(q), std::free(d), std::free(sum);
    q = static_cast<int8_t*>(std::malloc(n));
    d = static_cast<float*>(std::malloc(n / 32 * sizeof(float)));
    sum = static_cast<int32_t*>(std::malloc(n / 32 * sizeof(int32_t)));
    if (!q || !d || !sum) throw std::bad_alloc();
    capacity = n;
  }
  for (int m = 0; m < M; ++m)
    quantize_act_row(X + size_t(m) * K, K, q + size_t(m) * K, d + size_t(m) * (K / 32), sum + size_t(m) * (K / 32));
  return Q8Act{q, d, sum, K};
}

// The int8 path's twin: the integer dot of each 32-weight sub-block with its Q8 block (exact), scaled and summed in
// double, the affine offset term m · d_x · Σ q_x beside it.
void linear_q8_ref(const Q8Act& X, int M, const void* W, DType wt, int N, float* Y, int ldy, const Epilogue& ep) {
  const int K = X.K, bv = block_values(wt);
  for (int m = 0; m < M; ++m) {
    const Q8Act x = X.row(m);
    for (int n = 0; n < N; ++n) {
      const uint8_t* row = static_cast<const uint8_t*>(W) + bytes_of(wt, size_t(n) * K);
      double acc = 0;
      for (int xb = 0; xb < K / 32; ++xb) {
        const uint8_t* blk = row + size_t(xb * 32 / bv) * block_bytes(wt);
        const double dw = f16_to_f32(block_scale_bits(blk));
        int64_t dot = 0;
        for (int j = 0; j < 32; ++j) {
          const int i = (xb * 32 + j) % bv;  // weight index within its block
          int code;
          if (wt == DType::Q8_0) code = int8_t(blk[2 + i]);
          else if (wt == DType::Q4_0) code = int((i < 16 ? blk[2 + i] : blk[2 + i - 16] >> 4) & 15) - 8;
          else code = affine_code(blk, wt, i);
          dot += int64_t(code) * x.q[xb * 32 + j];
        }
        acc += dw * double(x.d[xb]) * double(dot);
        if (is_affine(wt)) acc += double(f16_to_f32(block_offset_bits(blk))) * double(x.d[xb]) * double(x.sum[xb]);
      }
      store_out(float(acc), m, n, Y, ldy, ep);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// GEMV: split by output rows, each thread streams its own slice of the weights. Over quantized weights X is
// quantized once per call (on the calling thread) and every slice takes the integer path.

void linear_gemv_q8(ThreadPool* pool, const Q8Act& X, int M, const void* W, DType wt, int N, float* Y, int ldy,
                    const Epilogue& ep) {
  auto gemv = kernel_table().gemv_q8[int(wt)];
  parallel_for(pool, size_t(N), 16, [&](size_t b, size_t e, int) { gemv(X, M, W, int(b), int(e), Y, ldy, ep); });
}

// −1 until first use, then DSMOE_INT8_GEMV_ROWS (0–4; measurements compare the paths in one build) or all of the
// GEMV path.
static std::atomic<int> g_int8_rows{-1};
int int8_gemv_rows() {
  int v = g_int8_rows.load(std::memory_order_relaxed);
  if (v >= 0) return v;
  const char* env = std::getenv("DSMOE_INT8_GEMV_ROWS");
  v = env && *env >= '0' && *env <= '9' ? std::min(kGemvMaxRows, std::atoi(env)) : kGemvMaxRows;
  g_int8_rows.store(v);
  return v;
}
void set_int8_gemv_rows(int rows) { g_int8_rows.store(std::min(kGemvMaxRows, std::max(0, rows))); }

static std::atomic<int> g_chunk_rows{-1};
int gemv_chunk_rows() {
  int v = g_chunk_rows.load(std::memory_order_relaxed);
  if (v >= 0) return v;
  const char* env = std::getenv("DSMOE_GEMV_CHUNK_ROWS");
  v = env && *env >= '0' && *env <= '9' ? std::min(64, std::max(kGemvMaxRows, std::atoi(env))) : kGemvChunkMaxRows;
  g_chunk_rows.store(v);
  return v;
}
void set_gemv_chunk_rows(int rows) { g_chunk_rows.store(std::min(64, std::max(kGemvMaxRows, rows))); }

// The GEMV with f32 activations (weights widened or dequantized in registers).
static void linear_gemv_f32(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y,
                            int ldy, const Epilogue& ep) {
  auto gemv = kernel_table().gemv[int(wt)];
  // Chunks of ≈ kGemvItemBytes of weights (at least 16 rows): long enough that a call's fixed costs (arranging the
  // input, the first misses) are small next to its streaming, and still hundreds of chunks for a large matrix.
  const size_t rows = std::max<size_t>(16, kGemvItemBytes / std::max<size_t>(1, bytes_of(wt, size_t(K))));
  parallel_for(pool, size_t(N), rows, [&](size_t b, size_t e, int) { gemv(X, M, K, W, int(b), int(e), Y, ldy, ep); });
}

void linear_gemv(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep) {
  if (is_quantized(wt) && K > 0 && M <= int8_gemv_rows()) {
    thread_local Q8Rows xq;
    linear_gemv_q8(pool, xq.quantize(X, M, K), M, W, wt, N, Y, ldy, ep);
    return;
  }
  linear_gemv_f32(pool, X, M, K, W, wt, N, Y, ldy, ep);
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM (BLIS-style): X is packed once into strips of mr rows interleaved by k (Ap [strip][K][mr]), so the
// micro-kernel's broadcasts read consecutive floats. For each block of nr weight rows and each slice of kGemmKc
// columns of K, the weights are widened once into a packed panel [kGemmKc, nr] and every strip runs the micro-kernel
// over it, accumulating into a C buffer [strips·mr, nr] that the epilogue (bias, routing weight, scatter) empties at
// the end. The blocking boundaries the tests cross: K = kGemmKc ± 1, M = mr ± 1, N not a multiple of nr.

// Per-thread buffers, 64-byte aligned, grown to the largest request and kept: once warm, a GEMM call allocates
// nothing (fresh allocations of this size come from mmap and page-fault on every call). Three kinds, because one
// call uses its Ap on the calling thread while every thread, the caller included, uses a panel and a C.
enum class GemmBuffer { Ap, Panel, C };
static float* gemm_buffer(GemmBuffer which, size_t n) {
  struct Buffer {
    float* p = nullptr;
    size_t n = 0;
    ~Buffer() { std::free(p); }
  };
  static thread_local Buffer buffers[3];
  Buffer& b = buffers[int(which)];
  if (b.n < n) {
    std::free(b.p);
    b.p = nullptr;
    b.n = 0;
    b.p = static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64));
    if (!b.p) throw std::bad_alloc();
    b.n = n;
  }
  return b.p;
}

void pack_panel_plain(const void* W, DType wt, int K, int k0, int kc, int N, int n0, int nr, float* panel) {
  for (int j = 0; j < nr; ++j) {
    if (n0 + j < N) {
      for (int k = 0; k < kc; ++k) panel[size_t(k) * nr + j] = load_f32(W, wt, size_t(n0 + j) * K + k0 + k);
    } else {
      for (int k = 0; k < kc; ++k) panel[size_t(k) * nr + j] = 0.f;
    }
  }
}

void linear_gemm(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
                 const Epilogue& ep) {
  if (M <= 0 || N <= 0) return;
  const KernelTable& kt = kernel_table();
  const int MR = kt.mr, NR = kt.nr;
  const int strips = (M + MR - 1) / MR;
  if (K == 0) {  // an empty product: the epilogue of zeros
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) store_out(0.f, m, n, Y, ldy, ep);
    return;
  }
  // Ap [strips][K][MR]; rows past M repeat row M−1 (computed, never stored).
  float* Ap = gemm_buffer(GemmBuffer::Ap, size_t(strips) * K * MR);
  parallel_for(pool, size_t(strips), 4, [&](size_t s0, size_t s1, int) {
    for (size_t st = s0; st < s1; ++st)
      for (int i = 0; i < MR; ++i) {
        const float* src = X + size_t(std::min(int(st) * MR + i, M - 1)) * K;
        float* dst = Ap + st * K * MR + i;
        for (int k = 0; k < K; ++k) dst[size_t(k) * MR] = src[k];
      }
  });
  auto pack = kt.pack[int(wt)];
  const size_t blocks = (size_t(N) + NR - 1) / NR;
  parallel_for(pool, blocks, 1, [&](size_t b0, size_t b1, int) {
    float* panel = gemm_buffer(GemmBuffer::Panel, size_t(kGemmKc) * NR);  // [kGemmKc, NR]
    float* C = gemm_buffer(GemmBuffer::C, size_t(strips) * MR * NR);      // [strips·MR, NR]
    for (size_t b = b0; b < b1; ++b) {
      const int n0 = int(b) * NR;
      for (int k0 = 0; k0 < K; k0 += kGemmKc) {
        const int kc = std::min(kGemmKc, K - k0);
        pack(W, K, k0, kc, N, n0, panel);
        for (int st = 0; st < strips; ++st)
          kt.microkernel(kc, Ap + (size_t(st) * K + k0) * MR, panel, C + size_t(st) * MR * NR, k0 > 0);
      }
      const int cols = std::min(NR, N - n0);
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < cols; ++j) store_out(C[size_t(m) * NR + j], m, n0 + j, Y, ldy, ep);
    }
  });
}

void linear(ThreadPool* pool, const float* X, int M, int K, const void* W, DType wt, int N, float* Y, int ldy,
            const Epilogue& ep) {
  if (M <= 0 || N <= 0) return;
  if (M <= kGemvMaxRows) {
    linear_gemv(pool, X, M, K, W, wt, N, Y, ldy, ep);
  } else if (M <= gemv_chunk_rows()) {
    for (int m0 = 0; m0 < M; m0 += kGemvMaxRows) {
      Epilogue chunk = ep;  // the epilogue's per-row arrays, from the chunk's first row
      if (chunk.row_scale) chunk.row_scale += m0;
      if (chunk.scatter) chunk.scatter += m0;  // scattered rows name their own Y rows
      float* Yc = ep.scatter ? Y : Y + size_t(m0) * ldy;
      // f32 activations, as the GEMM keeps them: the int8 path stays what batches ≤ int8_gemv_rows() take
      linear_gemv_f32(pool, X + size_t(m0) * K, std::min(kGemvMaxRows, M - m0), K, W, wt, N, Yc, ldy, chunk);
    }
  } else {
    linear_gemm(pool, X, M, K, W, wt, N, Y, ldy, ep);
  }
}

}  // namespace dsmoe
