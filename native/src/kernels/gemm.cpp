// Generic f32 GEMM C[M,N] = op(A)·op(B) over a batch of entries, for callers outside the model (the tfjs training
// kernels). BLIS-style on the kernel table's micro-kernel: both operands are packed once per call straight from
// their own layout (a transposed operand is read by the packer, never copied to a transposed matrix first):
// A into strips Ap [strip][K][mr], B into panels Bp [panel][K][nr]. The product is then split into macro tiles of
// kTileStrips strips × kTilePanels panels (of every batch entry) that the threads take in turn; within a tile, for
// each slice of kGemmKc columns of K, each panel slice (kc × nr, stays in L1) meets every strip slice of the tile
// (kc × mr; the tile's strips stay in L2), and each micro-kernel result is stored (first slice) or added (later
// slices) straight into C. Packing is O((M + N)·K) per entry next to the O(M·N·K) product.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../common/threadpool.h"
#include "kernel_table.h"
#include "kernels.h"

namespace dsmoe {

void gemm_ref(const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB,
              const GemmBatch& batch) {
  for (int e = 0; e < batch.count; ++e) {
    const float* a = A + size_t(batch.a_index ? batch.a_index[e] : e) * M * K;
    const float* b = B + size_t(batch.b_index ? batch.b_index[e] : e) * K * N;
    float* c = C + size_t(e) * M * N;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double acc = 0;
        for (int k = 0; k < K; ++k) {
          float x = transA ? a[size_t(k) * M + m] : a[size_t(m) * K + k];
          float y = transB ? b[size_t(n) * K + k] : b[size_t(k) * N + n];
          acc += double(x) * y;
        }
        c[size_t(m) * N + n] = float(acc);
      }
  }
}

namespace {

// Strips and panels per macro tile: a tile's packed strips (kTileStrips · kGemmKc · mr floats, 128 KiB on AVX-512)
// stay in L2 while its panels pass; tiles are the unit of work of the threads.
constexpr int kTileRows = 128, kTileCols = 256;
constexpr int kMaxTile = 8 * 32;  // the largest mr × nr of the kernel tables (AVX-512)

// Packed operands, kept between calls on the calling thread: a training step makes hundreds of products, and a
// fresh allocation each time would fault its pages in again.
float* scratch(size_t floats) {
  struct Buffer {
    float* p = nullptr;
    size_t n = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buf;
  if (floats > buf.n) {
    std::free(buf.p);
    buf.n = std::max(floats, buf.n + buf.n / 2);
    buf.p = static_cast<float*>(std::aligned_alloc(64, ((buf.n * 4 + 63) / 64) * 64));
    if (!buf.p) {
      buf.n = 0;
      throw std::bad_alloc();
    }
  }
  return buf.p;
}

// Ap[k · mr + i] = op(A)[m0 + i, k] for k < K; rows past M are zero (computed, never stored).
void pack_strip(const float* a, bool transA, int M, int K, int m0, int mr, float* Ap) {
  const int rows = std::min(mr, M - m0);
  if (transA) {  // A [K, M]: the strip's rows are consecutive in each row of A
    for (int k = 0; k < K; ++k) {
      const float* src = a + size_t(k) * M + m0;
      float* dst = Ap + size_t(k) * mr;
      for (int i = 0; i < rows; ++i) dst[i] = src[i];
      for (int i = rows; i < mr; ++i) dst[i] = 0.f;
    }
  } else {  // A [M, K]
    for (int i = 0; i < mr; ++i) {
      float* dst = Ap + i;
      if (i < rows) {
        const float* src = a + size_t(m0 + i) * K;
        for (int k = 0; k < K; ++k) dst[size_t(k) * mr] = src[k];
      } else {
        for (int k = 0; k < K; ++k) dst[size_t(k) * mr] = 0.f;
      }
    }
  }
}

// Bp[k · nr + j] = op(B)[k, n0 + j] for k < K; columns past N are zero.
void pack_panel(const KernelTable& kt, const float* b, bool transB, int N, int K, int n0, float* Bp) {
  const int nr = kt.nr;
  if (transB) {  // B [N, K] is linear()'s weight layout: the ISA's packer, one kGemmKc slice at a time
    for (int k0 = 0; k0 < K; k0 += kGemmKc) kt.pack[int(DType::F32)](b, K, k0, std::min(kGemmKc, K - k0), N, n0, Bp + size_t(k0) * nr);
    return;
  }
  const int cols = std::min(nr, N - n0);  // B [K, N]: the panel's columns are consecutive in each row of B
  for (int k = 0; k < K; ++k) {
    const float* src = b + size_t(k) * N + n0;
    float* dst = Bp + size_t(k) * nr;
    for (int j = 0; j < cols; ++j) dst[j] = src[j];
    for (int j = cols; j < nr; ++j) dst[j] = 0.f;
  }
}

}  // namespace

void gemm(ThreadPool* pool, const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB,
          const GemmBatch& batch) {
  if (M <= 0 || N <= 0 || batch.count <= 0) return;
  const size_t entries = size_t(batch.count);
  if (K == 0) {  // an empty sum
    std::memset(C, 0, entries * M * N * sizeof(float));
    return;
  }
  const KernelTable& kt = kernel_table();
  const int MR = kt.mr, NR = kt.nr;
  if (MR * NR > kMaxTile) std::abort();  // a new table's micro-kernel needs a larger accumulator tile below
  const size_t strips = (size_t(M) + MR - 1) / MR, panels = (size_t(N) + NR - 1) / NR;
  const size_t stripFloats = size_t(K) * MR, panelFloats = size_t(K) * NR;
  // The micro-kernels load panels with aligned loads: Bp starts on a 64-byte boundary (every panel, K·nr floats
  // with nr a multiple of 8, then stays 32-byte aligned, as the AVX2 kernel needs; AVX-512's nr = 32 keeps 64).
  const size_t aFloats = (entries * strips * stripFloats + 15) / 16 * 16;
  float* Ap = scratch(aFloats + entries * panels * panelFloats);  // [entry][strip][K][MR]
  float* Bp = Ap + aFloats;                                       // [entry][panel][K][NR]
  auto aEntry = [&](size_t e) { return A + size_t(batch.a_index ? batch.a_index[e] : int(e)) * M * K; };
  auto bEntry = [&](size_t e) { return B + size_t(batch.b_index ? batch.b_index[e] : int(e)) * K * N; };

  const size_t packJobs = entries * (strips + panels);
  parallel_for(pool, packJobs, 8, [&](size_t j0, size_t j1, int) {
    for (size_t j = j0; j < j1; ++j) {
      const size_t e = j / (strips + panels), r = j % (strips + panels);
      if (r < strips) pack_strip(aEntry(e), transA, M, K, int(r) * MR, MR, Ap + (e * strips + r) * stripFloats);
      else pack_panel(kt, bEntry(e), transB, N, K, int(r - strips) * NR, Bp + (e * panels + r - strips) * panelFloats);
    }
  });

  const size_t tileStrips = std::max(1, kTileRows / MR), tilePanels = std::max(1, kTileCols / NR);
  const size_t tileRows = (strips + tileStrips - 1) / tileStrips, tileCols = (panels + tilePanels - 1) / tilePanels;
  parallel_for(pool, entries * tileRows * tileCols, 1, [&](size_t t0, size_t t1, int) {
    alignas(64) float acc[kMaxTile];  // the micro-kernel's [mr, nr] result
    for (size_t t = t0; t < t1; ++t) {
      const size_t e = t / (tileRows * tileCols), tr = t / tileCols % tileRows, tc = t % tileCols;
      const size_t s0 = tr * tileStrips, s1 = std::min(strips, s0 + tileStrips);
      const size_t p0 = tc * tilePanels, p1 = std::min(panels, p0 + tilePanels);
      float* c = C + e * M * N;
      for (int k0 = 0; k0 < K; k0 += kGemmKc) {
        const int kc = std::min(kGemmKc, K - k0);
        for (size_t p = p0; p < p1; ++p) {
          const float* panel = Bp + (e * panels + p) * panelFloats + size_t(k0) * NR;
          const int n0 = int(p) * NR, cols = std::min(NR, N - n0);
          for (size_t s = s0; s < s1; ++s) {
            kt.microkernel(kc, Ap + (e * strips + s) * stripFloats + size_t(k0) * MR, panel, acc, false);
            const int m0 = int(s) * MR, rows = std::min(MR, M - m0);
            for (int i = 0; i < rows; ++i) {
              float* dst = c + size_t(m0 + i) * N + n0;
              const float* src = acc + i * NR;
              if (k0 == 0) for (int j = 0; j < cols; ++j) dst[j] = src[j];
              else for (int j = 0; j < cols; ++j) dst[j] += src[j];
            }
          }
        }
      }
    }
  });
}

}  // namespace dsmoe
