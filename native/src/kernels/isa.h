// Vector primitives with one spelling per instruction set, so that a kernel body is written once (gemv_isa.inc,
// rows_isa.inc) and instantiated for each ISA by kernel_table_<isa>.cpp. Each ISA's code is compiled with baseline
// flags plus a function target attribute (DSMOE_AVX2 / DSMOE_AVX512), never with -mavx*: an inline function compiled
// with wider flags in one file could be the copy the linker keeps for every caller and fault on an older CPU.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/arch.h"
#include "../common/dtype.h"

#if DSMOE_X86
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from an undefined register (`__Y = __Y`) and then warn about it where they
// are inlined; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define DSMOE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DSMOE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#endif

namespace dsmoe {

// The scalar "vector": one lane. Kernels instantiated with it are the real scalar path (f32 accumulation in the
// vector paths' order), not the _ref twins (double accumulation, plain loops).
struct ScalarOps {
  using vec = float;
  static constexpr int lanes = 1;
  static constexpr bool prefetch = false;
  static inline vec zero() { return 0.f; }
  static inline vec set1(float v) { return v; }
  static inline vec load(const float* p) { return *p; }
  static inline void store(float* p, vec v) { *p = v; }
  template <DType WT>
  static inline vec load_w(const void* p, size_t i) { return load_f32(p, WT, i); }
  // bf16 weights p[0], p[1] widened: the even one and the odd one (gemv_bf16_isa.inc's split layout).
  static inline void widen_bf16_split(const uint16_t* p, vec& even, vec& odd) {
    even = bf16_to_f32(p[0]);
    odd = bf16_to_f32(p[1]);
  }
  // x[0], x[1] as (even, odd): the input arrangement that matches widen_bf16_split.
  static inline void deinterleave(const float* x, vec& even, vec& odd) {
    even = x[0];
    odd = x[1];
  }
  static inline vec fmadd(vec a, vec b, vec c) { return a * b + c; }
  static inline vec add(vec a, vec b) { return a + b; }
  static inline vec mul(vec a, vec b) { return a * b; }
  static inline float hsum(vec v) { return v; }
};

#if DSMOE_X86
struct Avx2Ops {
  using vec = __m256;
  static constexpr int lanes = 8;
  static constexpr bool prefetch = true;
  DSMOE_AVX2 static inline vec zero() { return _mm256_setzero_ps(); }
  DSMOE_AVX2 static inline vec set1(float v) { return _mm256_set1_ps(v); }
  DSMOE_AVX2 static inline vec load(const float* p) { return _mm256_loadu_ps(p); }
  DSMOE_AVX2 static inline void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  // 8 weights at element offset i, widened in registers (bf16: a 16-bit shift; f16: F16C; quantized: i a
  // multiple of 8, so the 8 weights share one block: sign-, nibble- or 2-bit-extend (and Q3_A's high bits), convert,
  // times the block's scale, plus Q3_A / Q2_A's offset).
  template <DType WT>
  DSMOE_AVX2 static inline vec load_w(const void* p, size_t i) {
    if constexpr (WT == DType::F32) {
      return _mm256_loadu_ps(static_cast<const float*>(p) + i);
    } else if constexpr (is_affine(WT)) {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 64 * block_bytes(WT);
      const int j = int(i % 64);
      __m128i n = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 4 + (j & 15)));
      n = _mm_and_si128(_mm_srl_epi16(n, _mm_cvtsi32_si128(2 * (j >> 4))), _mm_set1_epi8(3));
      __m256i q = _mm256_cvtepu8_epi32(n);
      if constexpr (WT == DType::Q3_A) {  // bit k of qh's byte j / 8 to bit 2 of lane k
        const __m256i bits = _mm256_set1_epi32(b[kAffineHigh + (j >> 3)]);
        const __m256i high = _mm256_and_si256(_mm256_srlv_epi32(bits, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), _mm256_set1_epi32(1));
        q = _mm256_or_si256(q, _mm256_slli_epi32(high, 2));
      }
      return _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(_cvtsh_ss(block_scale_bits(b))),
                             _mm256_set1_ps(_cvtsh_ss(block_offset_bits(b))));
    } else if constexpr (is_quantized(WT)) {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 32 * block_bytes(WT);
      const size_t j = i % 32;
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(block_scale_bits(b)));
      __m256i q;
      if constexpr (WT == DType::Q8_0) {
        q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + j)));
      } else {
        __m128i n = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + (j & 15)));
        if (j >= 16) n = _mm_srli_epi16(n, 4);
        n = _mm_and_si128(n, _mm_set1_epi8(15));
        q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(n), _mm256_set1_epi32(8));
      }
      return _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
    } else {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
      if constexpr (WT == DType::F16) return _mm256_cvtph_ps(h);
      else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  }
  // 16 bf16 weights in one 32-byte load: each 32-bit lane holds an even weight (low half) and an odd one (high
  // half), so a 16-bit left shift gives the 8 even weights as f32 and masking the low half the 8 odd ones.
  DSMOE_AVX2 static inline void widen_bf16_split(const uint16_t* p, vec& even, vec& odd) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    even = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
    odd = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(int(0xFFFF0000u))));
  }
  // x[0..16) as its 8 even-indexed and 8 odd-indexed floats, in order (the arrangement widen_bf16_split needs).
  DSMOE_AVX2 static inline void deinterleave(const float* x, vec& even, vec& odd) {
    const __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8);
    // shuffle_ps works per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit permute puts the halves in order.
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  DSMOE_AVX2 static inline vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  DSMOE_AVX2 static inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  DSMOE_AVX2 static inline vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  DSMOE_AVX2 static inline float hsum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

struct Avx512Ops {
  using vec = __m512;
  static constexpr int lanes = 16;
  static constexpr bool prefetch = true;
  DSMOE_AVX512 static inline vec zero() { return _mm512_setzero_ps(); }
  DSMOE_AVX512 static inline vec set1(float v) { return _mm512_set1_ps(v); }
  DSMOE_AVX512 static inline vec load(const float* p) { return _mm512_loadu_ps(p); }
  DSMOE_AVX512 static inline void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  // 16 weights at element offset i (quantized: i a multiple of 16, so they share one block).
  template <DType WT>
  DSMOE_AVX512 static inline vec load_w(const void* p, size_t i) {
    if constexpr (WT == DType::F32) {
      return _mm512_loadu_ps(static_cast<const float*>(p) + i);
    } else if constexpr (is_affine(WT)) {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 64 * block_bytes(WT);
      const int j = int(i % 64);
      __m128i n = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
      n = _mm_and_si128(_mm_srl_epi16(n, _mm_cvtsi32_si128(2 * (j >> 4))), _mm_set1_epi8(3));
      __m512i q = _mm512_cvtepu8_epi32(n);
      if constexpr (WT == DType::Q3_A) {  // the 16 high bits of weights j..j+15 are a lane mask
        uint16_t high;
        std::memcpy(&high, b + kAffineHigh + (j >> 3), 2);
        q = _mm512_mask_or_epi32(q, __mmask16(high), q, _mm512_set1_epi32(4));
      }
      return _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(_cvtsh_ss(block_scale_bits(b))),
                             _mm512_set1_ps(_cvtsh_ss(block_offset_bits(b))));
    } else if constexpr (is_quantized(WT)) {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 32 * block_bytes(WT);
      const size_t j = i % 32;
      const __m512 d = _mm512_set1_ps(_cvtsh_ss(block_scale_bits(b)));
      __m512i q;
      if constexpr (WT == DType::Q8_0) {
        q = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + j)));
      } else {
        __m128i n = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
        if (j >= 16) n = _mm_srli_epi16(n, 4);
        n = _mm_and_si128(n, _mm_set1_epi8(15));
        q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(n), _mm512_set1_epi32(8));
      }
      return _mm512_mul_ps(_mm512_cvtepi32_ps(q), d);
    } else {
      __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
      if constexpr (WT == DType::F16) return _mm512_cvtph_ps(h);
      else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
  // 32 bf16 weights (one cache line) in one 64-byte load, split into even and odd as Avx2Ops does.
  DSMOE_AVX512 static inline void widen_bf16_split(const uint16_t* p, vec& even, vec& odd) {
    const __m512i raw = _mm512_loadu_si512(p);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(int(0xFFFF0000u))));
  }
  // x[0..32) as its 16 even-indexed and 16 odd-indexed floats, in order.
  DSMOE_AVX512 static inline void deinterleave(const float* x, vec& even, vec& odd) {
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(a, e, b);
    odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(e, _mm512_set1_epi32(1)), b);
  }
  DSMOE_AVX512 static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  DSMOE_AVX512 static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  DSMOE_AVX512 static inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  // Not _mm512_reduce_add_ps: GCC 12's version reads an undefined register and warns.
  DSMOE_AVX512 static inline float hsum(vec v) {
    __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);  // lanes 8..15 moved to 0..7
    return Avx2Ops::hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(hi)));
  }
};
#endif

}  // namespace dsmoe
