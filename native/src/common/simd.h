// Vector load-and-widen helpers. Each is compiled for one instruction set through a function target attribute,
// so the library builds with baseline flags and picks the path at run time (see cpu.h).
#pragma once
#include <cstdint>

#include "arch.h"
#include "dtype.h"

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

namespace dsmoe {

// 8 weights at element offset i, widened to f32 in registers (bf16: shift; f16: F16C).
DSMOE_AVX2 static inline __m256 load8(const void* p, DType t, size_t i) {
  if (t == DType::F32) return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
  if (t == DType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

DSMOE_AVX2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 weights at element offset i, widened to f32.
DSMOE_AVX512 static inline __m512 load16(const void* p, DType t, size_t i) {
  if (t == DType::F32) return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
  if (t == DType::F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Sum of 16 lanes. (Not _mm512_reduce_add_ps: GCC 12's version reads an undefined register and warns.)
DSMOE_AVX512 static inline float hsum16(__m512 v) {
  __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);  // lanes 8..15 moved to 0..7
  return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(hi)));
}

}  // namespace dsmoe
#endif
