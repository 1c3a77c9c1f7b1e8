// Integer primitives of the int8 GEMV over quantized weights (gemv_q8_isa.inc), one struct per instruction set, as
// isa.h's are for the f32 bodies. The unit is a sub-block of 32 weights (a Q8_0 / Q4_0 block, half a Q3_A / Q2_A
// block) against one Q8 block of 32 activations (kernels.h, Q8Act):
//   codes<WT>(block, sub)  the sub-block's 32 weight codes, one byte each: Q8_0 signed, Q4_0's nibbles 0..15, the
//                          affine codes 0..7 / 0..3 (byte j is weight 32·sub + j of the block)
//   dot<WT>(codes, x, xs)  the exact integer dot Σ q_w·q_x of the signed weight codes (Q4_0: nibble − 8, using the
//                          activations' code sum xs: Σ (c − 8)·x = Σ c·x − 8·xs; affine: the unsigned codes, the
//                          offset is the body's) as lanes of int32 whose sum is the dot
//   fmadd(dot, s, acc)     acc + s · dot in f32 lanes; hsum(acc) their sum
// Every partial sum is exact in its integer width: |codes| ≤ 128 and |x| ≤ 127, so a pair of u8·s8 products fits
// maddubs' saturating int16 (2·128·127 = 32512 < 32767) and a block's dot fits int32.
#pragma once
#include <cstdint>
#include <cstring>

#include "isa.h"

namespace dsmoe {

// The scalar twin: the same integer sums in plain loops (the scalar table's path, and what the SIMD paths are
// tested against to 1e-6).
struct ScalarInt8 {
  struct codes_t { int8_t v[32]; };
  using ivec = int32_t;
  using fvec = float;
  static constexpr bool prefetch = false;
  static inline float half(uint16_t bits) { return f16_to_f32(bits); }
  template <DType WT>
  static inline codes_t codes(const uint8_t* b, int sub) {
    codes_t c;
    for (int j = 0; j < 32; ++j) {
      if constexpr (WT == DType::Q8_0) c.v[j] = int8_t(b[2 + j]);
      else if constexpr (WT == DType::Q4_0) c.v[j] = int8_t(j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4);
      else c.v[j] = int8_t(affine_code(b, WT, 32 * sub + j));
    }
    return c;
  }
  using xvec = const int8_t*;
  static inline xvec xload(const int8_t* x) { return x; }
  template <DType WT>
  static inline ivec dot(const codes_t& c, xvec x, int32_t xs) {
    int32_t s = WT == DType::Q4_0 ? -8 * xs : 0;
    for (int j = 0; j < 32; ++j) s += int32_t(c.v[j]) * int32_t(x[j]);
    return s;
  }
  static inline fvec zero() { return 0.f; }
  static inline fvec fmadd(ivec d, float s, fvec acc) { return float(d) * s + acc; }
  static inline float hsum(fvec v) { return v; }
};

#if DSMOE_X86
#define DSMOE_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

// What the AVX2 and VNNI paths share, each compiled with its own target attribute (TARGET): the low code bits in a
// 256-bit register (Q3_A's high bits are each path's own), f32 lanes, the activation load.
#define DSMOE_INT8_CODES(TARGET)                                                                                   \
  template <DType WT>                                                                                             \
  TARGET static inline __m256i low_codes(const uint8_t* b, int sub) {                                             \
    if constexpr (WT == DType::Q8_0) {                                                                            \
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));                                         \
    } else if constexpr (WT == DType::Q4_0) {                                                                     \
      const __m128i n = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)), m = _mm_set1_epi8(15);          \
      return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(n, 4), m), _mm_and_si128(n, m));                       \
    } else {                                                                                                      \
      const __m128i n = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4)), m = _mm_set1_epi8(3);           \
      const __m128i lo = _mm_and_si128(_mm_srl_epi16(n, _mm_cvtsi32_si128(4 * sub)), m);                          \
      const __m128i hi = _mm_and_si128(_mm_srl_epi16(n, _mm_cvtsi32_si128(4 * sub + 2)), m);                      \
      return _mm256_set_m128i(hi, lo);                                                                            \
    }                                                                                                             \
  }                                                                                                               \
  using fvec = __m256;                                                                                            \
  static constexpr bool prefetch = true;                                                                          \
  TARGET static inline float half(uint16_t bits) { return _cvtsh_ss(bits); }                                    \
  using xvec = __m256i;                                                                                           \
  TARGET static inline xvec xload(const int8_t* x) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)); } \
  TARGET static inline fvec zero() { return _mm256_setzero_ps(); }                                                \
  TARGET static inline fvec fmadd(__m256i d, float s, fvec acc) {                                                 \
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(s), acc);                                       \
  }                                                                                                               \
  TARGET static inline float hsum(fvec v) { return Avx2Ops::hsum(v); }

// AVX2: u8 × s8 pairs with maddubs (int16), then pairs of those with madd (int32). Q8_0's signed weights take the
// sign trick (|w| times x with w's sign), as llama.cpp's mul_sum_i8_pairs does.
struct Avx2Int8 {
  using codes_t = __m256i;
  using ivec = __m256i;
  DSMOE_INT8_CODES(DSMOE_AVX2)
  template <DType WT>
  DSMOE_AVX2 static inline codes_t codes(const uint8_t* b, int sub) {
    __m256i c = low_codes<WT>(b, sub);
    if constexpr (WT == DType::Q3_A) {  // bit j of the 32-bit word qh[4·sub ..] to bit 2 of byte j
      uint32_t bits;
      std::memcpy(&bits, b + kAffineHigh + 4 * sub, 4);
      const __m256i spread = _mm256_shuffle_epi8(
          _mm256_set1_epi32(int(bits)), _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2,
                                                         2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
      const __m256i pick = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, pick), pick);
      c = _mm256_or_si256(c, _mm256_and_si256(set, _mm256_set1_epi8(4)));
    }
    return c;
  }
  template <DType WT>
  DSMOE_AVX2 static inline ivec dot(codes_t c, xvec x, int32_t xs) {
    __m256i p16;
    if constexpr (WT == DType::Q8_0) p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(x, c));
    else p16 = _mm256_maddubs_epi16(c, x);
    const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    if constexpr (WT == DType::Q4_0) return _mm256_add_epi32(p32, _mm256_set1_epi32(-xs));  // 8 lanes: −8·xs
    else return p32;
  }
};

// AVX-512 VNNI on 256-bit registers (AVX512VL): vpdpbusd adds the four u8 × s8 products of each int32 lane in one
// instruction and without saturation; Q4_0's −8·xs is the accumulator it starts from.
struct VnniInt8 {
  using codes_t = __m256i;
  using ivec = __m256i;
  DSMOE_INT8_CODES(DSMOE_AVX512VNNI)
  template <DType WT>
  DSMOE_AVX512VNNI static inline codes_t codes(const uint8_t* b, int sub) {
    __m256i c = low_codes<WT>(b, sub);
    if constexpr (WT == DType::Q3_A) {  // the 32 high bits are a byte mask
      uint32_t bits;
      std::memcpy(&bits, b + kAffineHigh + 4 * sub, 4);
      c = _mm256_mask_add_epi8(c, __mmask32(bits), c, _mm256_set1_epi8(4));
    }
    return c;
  }
  template <DType WT>
  DSMOE_AVX512VNNI static inline ivec dot(codes_t c, xvec x, int32_t xs) {
    if constexpr (WT == DType::Q8_0)
      return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(c, c), _mm256_sign_epi8(x, c));
    else if constexpr (WT == DType::Q4_0) return _mm256_dpbusd_epi32(_mm256_set1_epi32(-xs), c, x);
    else return _mm256_dpbusd_epi32(_mm256_setzero_si256(), c, x);
  }
};
#undef DSMOE_INT8_CODES
#endif

}  // namespace dsmoe
