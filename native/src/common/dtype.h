// Weight element types and their scalar widening to f32.
// Vector widening lives in kernels/isa.h; these scalar forms are the references the vector paths are tested against.
//
// Q8_0 and Q4_0 are GGUF's (llama.cpp's) block formats, byte for byte, so a GGUF export can copy blocks without
// re-quantizing: 32 consecutive weights of a row per block, symmetric, one f16 scale d per block first.
//   Q8_0 (34 bytes): d, then 32 int8 q;           w[j] = d · q[j]
//   Q4_0 (18 bytes): d, then 16 bytes of nibbles;  w[j] = d · ((qs[j] & 15) − 8),  w[j + 16] = d · ((qs[j] >> 4) − 8)
// Q3_A and Q2_A are this project's (no GGUF type has their layout): 64 consecutive weights per block, affine, an f16
// scale d and an f16 offset m (the block's low end) first, unsigned codes q; w[j] = d · q[j] + m. At 3 and 2 bits a
// symmetric code wastes one of only 8 or 4 levels and centres them on zero rather than on the block; the offset
// costs 16 bits per block, which is why the block is 64 weights (3.5 and 2.5 bits per weight, against 4.0 and 3.0
// for blocks of 32). docs/design.md §4 has the byte layout drawn out and the error each format adds.
//   Q2_A (20 bytes): d, m, qs[16];           q[j] = (qs[j % 16] >> 2·(j / 16)) & 3
//   Q3_A (28 bytes): d, m, qs[16], qh[8];    q[j] = the 2 bits above, plus 4 · bit (j % 8) of qh[j / 8]
// The 2-bit planes put the 16 weights a 512-bit vector loads in one 16-byte load and one shift (Q4_0's nibble layout
// one level further); the high bits of Q3_A are the 64-bit little-endian mask qh, so 16 weights' high bits are one
// 16-bit mask.
// A row of a quantized matrix must hold a whole number of blocks (K a multiple of block_values(t)), so element i of
// a row-major [N, K] matrix is element i % block_values(t) of block i / block_values(t) whatever the row.
// Dequantized weights are computed identically by every path: d·q is exact in f32 (an 11-bit scale times a ≤ 8-bit
// integer), so a fused or a separate multiply-add rounds d·q + m alike, and a kernel and its twin see the same
// weights.
#pragma once
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cmath>
#include <cstring>

namespace dsmoe {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3, Q4_0 = 4, Q3_A = 5, Q2_A = 6 };

constexpr bool is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q3_A || t == DType::Q2_A; }
constexpr bool is_affine(DType t) { return t == DType::Q3_A || t == DType::Q2_A; }  // scale and offset per block
// Weights per block (0 for the unquantized types) and bytes per block.
constexpr int block_values(DType t) { return is_affine(t) ? 64 : is_quantized(t) ? 32 : 0; }
constexpr size_t block_bytes(DType t) {
  return t == DType::Q8_0 ? 34 : t == DType::Q4_0 ? 18 : t == DType::Q3_A ? 28 : t == DType::Q2_A ? 20 : 0;
}
constexpr size_t kAffineHigh = 4 + 16;  // byte offset of Q3_A's qh in a block (after d, m and the 2-bit plane)
// Bytes per element of the unquantized types; the alignment unit (1: byte-aligned blocks) of the quantized ones.
constexpr size_t dtype_size(DType t) { return t == DType::F32 ? 4 : is_quantized(t) ? 1 : 2; }
// Bytes of `elems` consecutive weights (for quantized types, a whole number of blocks; rounded up otherwise).
constexpr uint64_t bytes_of(DType t, uint64_t elems) {
  return is_quantized(t) ? (elems + block_values(t) - 1) / block_values(t) * block_bytes(t) : elems * dtype_size(t);
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q3_A: return "Q3_A";
    default: return "Q2_A";
  }
}

// bf16 is the top half of an f32: widening is a 16-bit shift.
inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even narrowing, NaN kept quiet (used by tests and by the scalar reference only).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// IEEE binary16 → binary32 without F16C (ARM / scalar path), subnormals and inf/NaN included.
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {
      // Subnormal: normalise the mantissa.
      int e = -1;
      do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
      man &= 0x3ffu;
      bits = sign | uint32_t(127 - 15 - e) << 23 | man << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// f32 → f16, round to nearest even (tests only).
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow → inf
  if (absx < 0x38800000u) {                                   // subnormal or zero in f16
    if (absx < 0x33000000u) return uint16_t(sign);
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 113 - e + 13
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = absx - 0x38000000u;  // rebias 127 → 15
  uint32_t rounded = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;
  return uint16_t(sign | rounded);
}

// The f16 scale at the start of a quantized block (blocks are byte-aligned: no 16-bit load), and the f16 offset
// after it in Q3_A / Q2_A blocks.
inline uint16_t block_scale_bits(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block, 2);
  return bits;
}
inline uint16_t block_offset_bits(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block + 2, 2);
  return bits;
}

// The code q[j] of weight j of a Q3_A / Q2_A block (layout above).
inline int affine_code(const uint8_t* block, DType t, int j) {
  int q = (block[4 + (j & 15)] >> (2 * (j >> 4))) & 3;
  if (t == DType::Q3_A) q |= ((block[kAffineHigh + (j >> 3)] >> (j & 7)) & 1) << 2;
  return q;
}

// Element i of a weight array of type t, widened (dequantized).
inline float load_f32(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::Q8_0: {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 32 * block_bytes(t);
      return f16_to_f32(block_scale_bits(b)) * float(int8_t(b[2 + i % 32]));
    }
    case DType::Q4_0: {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 32 * block_bytes(t);
      const size_t j = i % 32;
      const uint8_t q = b[2 + (j & 15)];
      return f16_to_f32(block_scale_bits(b)) * float(int((j < 16 ? q : q >> 4) & 15) - 8);
    }
    default: {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / 64 * block_bytes(t);
      return f16_to_f32(block_scale_bits(b)) * float(affine_code(b, t, int(i % 64))) + f16_to_f32(block_offset_bits(b));
    }
  }
}

// Quantizes one Q3_A / Q2_A block of 64 weights. Offset and scale span a range [lo, hi] narrowed around the block's
// midpoint by one of a few fixed factors (the full min–max range first); each candidate is rounded to f16 as stored,
// the weights are coded to the nearest level, and the candidate whose dequantized block has the least squared error
// wins (the first on ties). Narrowing clips the extremes to shrink the step: for Gaussian weights the best uniform
// 4-level quantizer spans about ±1.5σ, not a block's ±2.4σ (on Gaussian weights min–max alone leaves nMSE 0.18 at 2 bits and 0.035 at 3, the search 0.105 and 0.025:
// kernel_tests.cpp's test_quant_error).
// Every step is one f32 operation that no multiply-add fusion can change (divisions, subtractions, exact products;
// the error sums exact squares in double), so src/plan/quantize.ts repeats it bit for bit.
constexpr int kAffineCandidates = 8;
constexpr float kAffineNarrowing[kAffineCandidates] = {1.f, 1.08f, 1.16f, 1.25f, 1.35f, 1.5f, 1.7f, 2.f};
inline void quantize_affine_block(const float* x, DType t, uint8_t* out) {
  const int levels = t == DType::Q3_A ? 7 : 3;  // the largest code
  float lo = x[0], hi = x[0];
  for (int j = 1; j < 64; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
  const float half = (hi - lo) * 0.5f, mid = lo + half;  // the product is exact: a fused add rounds the same
  double best_err = 0;
  uint16_t best_d = 0, best_m = 0;
  uint8_t codes[64], best_codes[64];
  for (int c = 0; c < kAffineCandidates; ++c) {
    const float r = half / kAffineNarrowing[c];
    const uint16_t mh = f32_to_f16(mid - r);
    const float m = f16_to_f32(mh);
    const uint16_t dh = f32_to_f16((mid + r - m) / float(levels));
    const float d = f16_to_f32(dh);
    double err = 0;
    for (int j = 0; j < 64; ++j) {
      float v = d > 0.f ? (x[j] - m) / d : 0.f;
      v = std::min(std::max(v, 0.f), float(levels));
      codes[j] = uint8_t(std::floor(v + 0.5f));
      const float diff = (d * float(codes[j]) + m) - x[j];  // d·q exact, as every kernel dequantizes it
      err += double(diff) * double(diff);
    }
    if (c == 0 || err < best_err) {
      best_err = err, best_d = dh, best_m = mh;
      std::memcpy(best_codes, codes, 64);
    }
  }
  std::memcpy(out, &best_d, 2);
  std::memcpy(out + 2, &best_m, 2);
  std::memset(out + 4, 0, block_bytes(t) - 4);
  for (int j = 0; j < 64; ++j) {
    out[4 + (j & 15)] |= uint8_t((best_codes[j] & 3) << (2 * (j >> 4)));
    if (t == DType::Q3_A) out[kAffineHigh + (j >> 3)] |= uint8_t((best_codes[j] >> 2) << (j & 7));
  }
}

// Quantizes one row of K weights (K a multiple of block_values(t)) into blocks: Q8_0 / Q4_0 as ggml's
// quantize_row_q8_0_ref / quantize_row_q4_0_ref do, Q3_A / Q2_A by quantize_affine_block (tests and tools; the
// converter does the same in TypeScript, src/plan/quantize.ts).
inline void quantize_row(const float* x, int K, DType t, uint8_t* out) {
  if (is_affine(t)) {
    for (int b = 0; b < K / 64; ++b) quantize_affine_block(x + size_t(b) * 64, t, out + size_t(b) * block_bytes(t));
    return;
  }
  constexpr int kQuantBlock = 32;
  for (int b = 0; b < K / kQuantBlock; ++b, x += kQuantBlock, out += block_bytes(t)) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < kQuantBlock; ++j)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    if (t == DType::Q8_0) {
      const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
      const uint16_t h = f32_to_f16(d);
      std::memcpy(out, &h, 2);
      for (int j = 0; j < kQuantBlock; ++j) out[2 + j] = uint8_t(int8_t(std::lround(x[j] * id)));
    } else {
      const float d = max / -8.f, id = d ? 1.f / d : 0.f;
      const uint16_t h = f32_to_f16(d);
      std::memcpy(out, &h, 2);
      for (int j = 0; j < 16; ++j) {
        const int lo = std::min(15, int(x[j] * id + 8.5f)), hi = std::min(15, int(x[j + 16] * id + 8.5f));
        out[2 + j] = uint8_t(lo | hi << 4);
      }
    }
  }
}

}  // namespace dsmoe
