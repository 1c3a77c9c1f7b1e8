// bf16-compute GEMM (gemm_bf16.h): gemm.cpp's blocking with bf16 operands. Packing rounds each operand to bf16
// and lays it out as k-pairs — A strips [K/2][mr] and B panels [K/2][nr] of 32-bit words, each word the bf16 of
// k = 2p (low half) and k = 2p + 1 (high half), K padded with a zero when odd — which is what vdpbf16ps reads:
// per f32 lane, acc += a[2p]·b[2p] + a[2p+1]·b[2p+1]. The micro-kernel (12 rows × 32 columns, 24 accumulators)
// broadcasts one A word per row and multiplies it into two B vectors of 16 words: half the operand bytes of the
// f32 GEMM and two products per lane per instruction. Results are summed in f32 and written as f32.
#include "gemm_bf16.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "../common/arch.h"
#include "../common/cpu.h"
#include "../common/dtype.h"
#include "../common/threadpool.h"

#if DSMOE_X86
#include <immintrin.h>
#define DSMOE_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#endif

namespace dsmoe {

namespace {

// bf16 bits of x as the packers produce them: subnormals to signed zero (vcvtneps2bf16 does so), then round to
// nearest even.
uint16_t bf16_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0) bits &= 0x80000000u;
  std::memcpy(&x, &bits, 4);
  return f32_to_bf16(x);
}

}  // namespace

float round_to_bf16(float x) { return bf16_to_f32(bf16_bits(x)); }

bool bf16_compute_available() {
#if DSMOE_X86
  __builtin_cpu_init();
  return simd_level() == Simd::Avx512 && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

void gemm_bf16_ref(const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB,
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
          acc += double(round_to_bf16(x)) * round_to_bf16(y);
        }
        c[size_t(m) * N + n] = float(acc);
      }
  }
}

#if DSMOE_X86
namespace {

constexpr int MR = 12, NR = 32;
constexpr int kPairsPerSlice = 128;  // 256 values of K per slice, as the f32 GEMM's kGemmKc
constexpr int kTileRows = 120, kTileCols = 256;  // a macro tile: 10 strips × 8 panels

// Packed operands, kept between calls on the calling thread (as gemm.cpp's scratch: no page faults per product).
uint32_t* scratch(size_t words) {
  struct Buffer {
    uint32_t* p = nullptr;
    size_t n = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buf;
  if (words > buf.n) {
    std::free(buf.p);
    buf.n = std::max(words, buf.n + buf.n / 2);
    buf.p = static_cast<uint32_t*>(std::aligned_alloc(64, ((buf.n * 4 + 63) / 64) * 64));
    if (!buf.p) {
      buf.n = 0;
      throw std::bad_alloc();
    }
  }
  return buf.p;
}

// dst[i] = bf16 of src[i], 16 at a time with vcvtneps2bf16, the last < 16 under a mask (a transposed A packs
// 12-value rows, all of them tail: converting those one by one made such products 2.4x slower than in f32).
DSMOE_AVX512_BF16 void to_bf16(const float* src, int n, uint16_t* dst) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<__m256i&>(h));
  }
  if (i < n) {
    const __mmask16 tail = __mmask16((1u << (n - i)) - 1);
    __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail, src + i));
    _mm256_mask_storeu_epi16(dst + i, tail, reinterpret_cast<__m256i&>(h));
  }
}

// K runs along each row of src (row r at src + r·ld, r < count ≤ width): dst[p · width + r] = the pair (k = 2p,
// 2p + 1) of row r; rows count..width-1 are zero. A untransposed (strips) and B transposed (panels).
DSMOE_AVX512_BF16 void pack_k_along_rows(const float* src, size_t ld, int count, int K, int width, uint32_t* dst,
                                          std::vector<uint16_t>& tmp) {
  const int pairs = (K + 1) / 2;
  tmp.assign(size_t(pairs) * 2, 0);
  for (int r = 0; r < width; ++r) {
    if (r >= count) {
      for (int p = 0; p < pairs; ++p) dst[size_t(p) * width + r] = 0;
      continue;
    }
    to_bf16(src + size_t(r) * ld, K, tmp.data());
    for (int p = 0; p < pairs; ++p) dst[size_t(p) * width + r] = uint32_t(tmp[2 * p]) | uint32_t(tmp[2 * p + 1]) << 16;
  }
}

// K runs down the rows of src (row k at src + k·ld, count consecutive values): dst[p · width + j] = the pair of
// column j; columns count..width-1 are zero. A transposed (strips) and B untransposed (panels).
DSMOE_AVX512_BF16 void pack_k_down_rows(const float* src, size_t ld, int count, int K, int width, uint32_t* dst,
                                         std::vector<uint16_t>& tmp) {
  const int pairs = (K + 1) / 2;
  tmp.assign(size_t(width) * 2, 0);
  uint16_t *lo = tmp.data(), *hi = tmp.data() + width;
  for (int p = 0; p < pairs; ++p) {
    to_bf16(src + size_t(2 * p) * ld, count, lo);
    if (2 * p + 1 < K) to_bf16(src + size_t(2 * p + 1) * ld, count, hi);
    else std::fill(hi, hi + count, uint16_t(0));
    uint32_t* d = dst + size_t(p) * width;
    for (int j = 0; j < count; ++j) d[j] = uint32_t(lo[j]) | uint32_t(hi[j]) << 16;
    for (int j = count; j < width; ++j) d[j] = 0;
  }
}

// C[12][32] = Ap[pairs][12] · panel[pairs][32] over k-pairs (one vdpbf16ps per row and 16 columns).
DSMOE_AVX512_BF16 void microkernel(int pairs, const uint32_t* Ap, const uint32_t* panel, float* C) {
  __m512 c[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int p = 0; p < pairs; ++p) {
    const __m512i b0 = _mm512_load_si512(panel + size_t(p) * NR), b1 = _mm512_load_si512(panel + size_t(p) * NR + 16);
    const uint32_t* a = Ap + size_t(p) * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512i x = _mm512_set1_epi32(int(a[i]));
      c[i][0] = _mm512_dpbf16_ps(c[i][0], reinterpret_cast<const __m512bh&>(x), reinterpret_cast<const __m512bh&>(b0));
      c[i][1] = _mm512_dpbf16_ps(c[i][1], reinterpret_cast<const __m512bh&>(x), reinterpret_cast<const __m512bh&>(b1));
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_store_ps(C + i * NR, c[i][0]);
    _mm512_store_ps(C + i * NR + 16, c[i][1]);
  }
}

}  // namespace

void gemm_bf16(ThreadPool* pool, const float* A, const float* B, float* C, int M, int N, int K, bool transA,
               bool transB, const GemmBatch& batch) {
  if (!bf16_compute_available()) std::abort();  // callers check first (the binding refuses with a message)
  if (M <= 0 || N <= 0 || batch.count <= 0) return;
  const size_t entries = size_t(batch.count);
  if (K == 0) {
    std::memset(C, 0, entries * M * N * sizeof(float));
    return;
  }
  const int pairs = (K + 1) / 2;
  const size_t strips = (size_t(M) + MR - 1) / MR, panels = (size_t(N) + NR - 1) / NR;
  const size_t stripWords = size_t(pairs) * MR, panelWords = size_t(pairs) * NR;
  // Panels start 64-byte aligned (NR words = 128 bytes per pair), for the micro-kernel's aligned loads.
  const size_t aWords = (entries * strips * stripWords + 15) / 16 * 16;
  uint32_t* Ap = scratch(aWords + entries * panels * panelWords);  // [entry][strip][pairs][MR]
  uint32_t* Bp = Ap + aWords;                                      // [entry][panel][pairs][NR]
  auto aEntry = [&](size_t e) { return A + size_t(batch.a_index ? batch.a_index[e] : int(e)) * M * K; };
  auto bEntry = [&](size_t e) { return B + size_t(batch.b_index ? batch.b_index[e] : int(e)) * K * N; };

  parallel_for(pool, entries * (strips + panels), 8, [&](size_t j0, size_t j1, int) {
    thread_local std::vector<uint16_t> tmp;
    for (size_t j = j0; j < j1; ++j) {
      const size_t e = j / (strips + panels), r = j % (strips + panels);
      if (r < strips) {
        const int m0 = int(r) * MR, rows = std::min(MR, M - m0);
        uint32_t* dst = Ap + (e * strips + r) * stripWords;
        if (transA) pack_k_down_rows(aEntry(e) + m0, size_t(M), rows, K, MR, dst, tmp);  // A [K, M]
        else pack_k_along_rows(aEntry(e) + size_t(m0) * K, size_t(K), rows, K, MR, dst, tmp);
      } else {
        const int n0 = int(r - strips) * NR, cols = std::min(NR, N - n0);
        uint32_t* dst = Bp + (e * panels + r - strips) * panelWords;
        if (transB) pack_k_along_rows(bEntry(e) + size_t(n0) * K, size_t(K), cols, K, NR, dst, tmp);  // B [N, K]
        else pack_k_down_rows(bEntry(e) + n0, size_t(N), cols, K, NR, dst, tmp);
      }
    }
  });

  const size_t tileStrips = kTileRows / MR, tilePanels = kTileCols / NR;
  const size_t tileRows = (strips + tileStrips - 1) / tileStrips, tileCols = (panels + tilePanels - 1) / tilePanels;
  parallel_for(pool, entries * tileRows * tileCols, 1, [&](size_t t0, size_t t1, int) {
    alignas(64) float acc[MR * NR];
    for (size_t t = t0; t < t1; ++t) {
      const size_t e = t / (tileRows * tileCols), tr = t / tileCols % tileRows, tc = t % tileCols;
      const size_t s0 = tr * tileStrips, s1 = std::min(strips, s0 + tileStrips);
      const size_t p0 = tc * tilePanels, p1 = std::min(panels, p0 + tilePanels);
      float* c = C + e * M * N;
      for (int q0 = 0; q0 < pairs; q0 += kPairsPerSlice) {
        const int pc = std::min(kPairsPerSlice, pairs - q0);
        for (size_t p = p0; p < p1; ++p) {
          const uint32_t* panel = Bp + (e * panels + p) * panelWords + size_t(q0) * NR;
          const int n0 = int(p) * NR, cols = std::min(NR, N - n0);
          for (size_t s = s0; s < s1; ++s) {
            microkernel(pc, Ap + (e * strips + s) * stripWords + size_t(q0) * MR, panel, acc);
            const int m0 = int(s) * MR, rows = std::min(MR, M - m0);
            for (int i = 0; i < rows; ++i) {
              float* dst = c + size_t(m0 + i) * N + n0;
              const float* src = acc + i * NR;
              if (q0 == 0) for (int j = 0; j < cols; ++j) dst[j] = src[j];
              else for (int j = 0; j < cols; ++j) dst[j] += src[j];
            }
          }
        }
      }
    }
  });
}
#else
void gemm_bf16(ThreadPool*, const float*, const float*, float*, int, int, int, bool, bool, const GemmBatch&) {
  std::abort();  // bf16_compute_available() is false without x86 vector code
}
#endif

}  // namespace dsmoe
