// Weight element types and their scalar widening to f32.
// Vector widening lives in kernels/isa.h; these scalar forms are the references the vector paths are tested against.
//
// Q8_0 and Q4_0 are GGUF's (llama.cpp's) block formats, byte for byte, so a GGUF export can copy blocks without
// re-quantizing: 32 consecutive weights of a row per block, symmetric, one f16 scale d per block first.
//   Q8_0 (34 bytes): d, then 32 int8 q;           w[j] = d · q[j]
//   Q4_0 (18 bytes): d, then 16 bytes of nibbles;  w[j] = d · ((qs[j] & 15) − 8),  w[j + 16] = d · ((qs[j] >> 4) − 8)
// A row of a quantized matrix must hold a whole number of blocks (K a multiple of 32), so element i of a row-major
// [N, K] matrix is element i % 32 of block i / 32 whatever the row. Dequantized weights are exact in f32 (an
// 11-bit scale times a ≤ 8-bit integer), so a kernel and its twin see the same weights.
#pragma once
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cmath>
#include <cstring>

namespace dsmoe {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3, Q4_0 = 4 };

constexpr int kQuantBlock = 32;  // weights per Q8_0 / Q4_0 block

constexpr bool is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }
constexpr size_t block_bytes(DType t) { return t == DType::Q8_0 ? 34 : t == DType::Q4_0 ? 18 : 0; }
// Bytes per element of the unquantized types; the alignment unit (1: byte-aligned blocks) of the quantized ones.
constexpr size_t dtype_size(DType t) { return t == DType::F32 ? 4 : is_quantized(t) ? 1 : 2; }
// Bytes of `elems` consecutive weights (for quantized types, a whole number of blocks; rounded up otherwise).
constexpr uint64_t bytes_of(DType t, uint64_t elems) {
  return is_quantized(t) ? (elems + kQuantBlock - 1) / kQuantBlock * block_bytes(t) : elems * dtype_size(t);
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::Q8_0: return "Q8_0";
    default: return "Q4_0";
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

// The f16 scale at the start of a quantized block (blocks are byte-aligned: no 16-bit load).
inline uint16_t block_scale_bits(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block, 2);
  return bits;
}

// Element i of a weight array of type t, widened (dequantized).
inline float load_f32(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::Q8_0: {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / kQuantBlock * block_bytes(t);
      return f16_to_f32(block_scale_bits(b)) * float(int8_t(b[2 + i % kQuantBlock]));
    }
    default: {
      const uint8_t* b = static_cast<const uint8_t*>(p) + i / kQuantBlock * block_bytes(t);
      const size_t j = i % kQuantBlock;
      const uint8_t q = b[2 + (j & 15)];
      return f16_to_f32(block_scale_bits(b)) * float(int((j < 16 ? q : q >> 4) & 15) - 8);
    }
  }
}

// Quantizes one row of K weights (K a multiple of 32) into GGUF blocks, as ggml's quantize_row_q8_0_ref /
// quantize_row_q4_0_ref do (tests and tools; the converter does the same in TypeScript, src/plan/quantize.ts).
inline void quantize_row(const float* x, int K, DType t, uint8_t* out) {
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
