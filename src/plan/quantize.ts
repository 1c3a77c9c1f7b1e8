/**
 * The block formats of quantized plan matrices. GGUF's (llama.cpp's) Q8_0 and Q4_0, byte for byte (also for GGUF
 * export):
 *
 * - Q8_0: blocks of 32 values, `{ f16 d; int8 qs[32] }` (34 bytes); value = qs[i]·d, d = max|x| / 127.
 * - Q4_0: blocks of 32 values, `{ f16 d; uint8 qs[16] }` (18 bytes); value = (nibble − 8)·d, element j in the low
 *   nibble of qs[j] and element j + 16 in its high nibble, d = (the value of largest magnitude) / −8.
 *
 *
 * and this project's affine Q3_A and Q2_A (no GGUF type has their layout; docs/design.md §4 says why affine and why
 * 64 weights):
 *
 * - Q2_A: blocks of 64 values, `{ f16 d; f16 m; uint8 qs[16] }` (20 bytes); value = d·q + m with the 2-bit code
 *   q[j] = (qs[j % 16] >> 2·(j / 16)) & 3.
 * - Q3_A: blocks of 64 values, `{ f16 d; f16 m; uint8 qs[16]; uint8 qh[8] }` (28 bytes); q[j] is the 2-bit code
 *   above plus 4 · bit (j % 8) of qh[j / 8].
 *
 * Blocks run along a matrix's rows (its last dimension), so a quantized row holds a whole number of blocks.
 * Quantization follows ggml's reference (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) and the runtime's
 * `quantize_row` (native/src/common/dtype.h) step by step in float32 arithmetic, so the bytes equal those
 * `llama-quantize` and the C++ write from the same float32 values (test/plan/quantize.test.ts checks both).
 */
import { f16BitsToF32, f16ToF32, f32ToF16, f32ToF16Bits } from '../checkpoint/safetensors';

export type QuantType = 'Q8_0' | 'Q4_0' | 'Q3_A' | 'Q2_A';

/** Values and bytes per block. */
export const QUANT_BLOCK: Record<QuantType, { values: number; bytes: number }> = {
  Q8_0: { values: 32, bytes: 34 },
  Q4_0: { values: 32, bytes: 18 },
  Q3_A: { values: 64, bytes: 28 },
  Q2_A: { values: 64, bytes: 20 },
};

/** Bytes of `elements` values stored as `type` (elements must fill whole blocks). */
export function quantizedByteLength(type: QuantType, elements: number): number {
  const { values, bytes } = QUANT_BLOCK[type];
  if (elements % values !== 0) throw new Error(`${type}: ${elements} values do not fill blocks of ${values}`);
  return (elements / values) * bytes;
}

/** The blocks of `values` (a whole number of blocks of them) as `type`. */
export function quantize(values: Float32Array, type: QuantType): Buffer {
  if (type === 'Q3_A' || type === 'Q2_A') return quantizeAffine(values, type);
  return type === 'Q8_0' ? quantizeQ8_0(values) : quantizeQ4_0(values);
}

/** C's roundf: half away from zero (Math.round rounds −2.5 to −2). */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

function quantizeQ8_0(values: Float32Array): Buffer {
  const blocks = quantizedByteLength('Q8_0', values.length) / 34;
  const out = Buffer.alloc(blocks * 34);
  const quants = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  const scales = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const base = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[base + j]));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    scales[b] = d;
    for (let j = 0; j < 32; j++) quants[b * 34 + 2 + j] = roundHalfAway(Math.fround(values[base + j] * id));
  }
  const halves = f32ToF16(scales); // every block's scale to f16 in one pass
  for (let b = 0; b < blocks; b++) out.writeUInt16LE(halves[b], b * 34);
  return out;
}

function quantizeQ4_0(values: Float32Array): Buffer {
  const blocks = quantizedByteLength('Q4_0', values.length) / 18;
  const out = Buffer.alloc(blocks * 18);
  const scales = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const base = b * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[base + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    scales[b] = d;
    for (let j = 0; j < 16; j++) {
      // (int8_t)(x·id + 8.5f), truncated toward zero; the sum is never negative
      const low = Math.min(15, Math.trunc(Math.fround(Math.fround(values[base + j] * id) + 8.5)));
      const high = Math.min(15, Math.trunc(Math.fround(Math.fround(values[base + 16 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = low | (high << 4);
    }
  }
  const halves = f32ToF16(scales); // every block's scale to f16 in one pass
  for (let b = 0; b < blocks; b++) out.writeUInt16LE(halves[b], b * 18);
  return out;
}

/** The range narrowings quantize_affine_block tries (native/src/common/dtype.h), as float32. */
const AFFINE_NARROWING = [1, 1.08, 1.16, 1.25, 1.35, 1.5, 1.7, 2].map(Math.fround);

/**
 * Q3_A / Q2_A, as the runtime's `quantize_affine_block`: for each narrowing of the block's [min, max] around its
 * midpoint, the f16 offset m and scale d, codes to the nearest level, and the squared error of the dequantized
 * block (exact squares summed in double); the first candidate with the least error wins. Every float32 step is
 * rounded with Math.fround in the C++'s order.
 */
function quantizeAffine(values: Float32Array, type: 'Q3_A' | 'Q2_A'): Buffer {
  const { bytes: blockBytes } = QUANT_BLOCK[type];
  const blocks = quantizedByteLength(type, values.length) / blockBytes;
  const out = Buffer.alloc(blocks * blockBytes);
  const levels = type === 'Q3_A' ? 7 : 3;
  const f = Math.fround;
  const codes = new Uint8Array(64);
  const best = new Uint8Array(64);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * 64, b * 64 + 64);
    let lo = x[0];
    let hi = x[0];
    for (let j = 1; j < 64; j++) {
      if (x[j] < lo) lo = x[j]; // std::min / std::max keep the first of equals
      if (hi < x[j]) hi = x[j];
    }
    const half = f(f(hi - lo) * 0.5);
    const mid = f(lo + half);
    let bestErr = 0;
    let bestD = 0;
    let bestM = 0;
    AFFINE_NARROWING.forEach((narrowing, c) => {
      const r = f(half / narrowing);
      const mBits = f32ToF16Bits(f(mid - r));
      const m = f16BitsToF32(mBits);
      const dBits = f32ToF16Bits(f(f(f(mid + r) - m) / levels));
      const d = f16BitsToF32(dBits);
      let err = 0;
      for (let j = 0; j < 64; j++) {
        let v = d > 0 ? f(f(x[j] - m) / d) : 0;
        v = v < 0 ? 0 : v;
        v = levels < v ? levels : v;
        codes[j] = Math.floor(f(v + 0.5));
        const diff = f(f(f(d * codes[j]) + m) - x[j]);
        err += diff * diff;
      }
      if (c === 0 || err < bestErr) {
        bestErr = err;
        bestD = dBits;
        bestM = mBits;
        best.set(codes);
      }
    });
    const at = b * blockBytes;
    out.writeUInt16LE(bestD, at);
    out.writeUInt16LE(bestM, at + 2);
    for (let j = 0; j < 64; j++) {
      out[at + 4 + (j & 15)] |= (best[j] & 3) << (2 * (j >> 4));
      if (type === 'Q3_A') out[at + 20 + (j >> 3)] |= (best[j] >> 2) << (j & 7);
    }
  }
  return out;
}

/** The float32 values of `elements` values stored as `type` (exact: an f16 scale times a small integer, plus Q3_A / Q2_A's offset). */
export function dequantize(bytes: Uint8Array, type: QuantType, elements: number): Float32Array {
  const expected = quantizedByteLength(type, elements);
  if (bytes.byteLength !== expected) throw new Error(`${type}: ${elements} values need ${expected} bytes, got ${bytes.byteLength}`);
  const out = new Float32Array(elements);
  const { values: blockValues, bytes: blockBytes } = QUANT_BLOCK[type];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const halfScales = new Uint16Array(elements / blockValues);
  for (let b = 0; b < halfScales.length; b++) halfScales[b] = view.getUint16(b * blockBytes, true);
  const scales = f16ToF32(halfScales);
  for (let b = 0; b < scales.length; b++) {
    const at = b * blockBytes;
    const d = scales[b];
    if (type === 'Q8_0') {
      for (let j = 0; j < 32; j++) out[b * 32 + j] = view.getInt8(at + 2 + j) * d;
    } else if (type === 'Q4_0') {
      for (let j = 0; j < 16; j++) {
        const q = bytes[at + 2 + j];
        out[b * 32 + j] = ((q & 0x0f) - 8) * d;
        out[b * 32 + 16 + j] = ((q >> 4) - 8) * d;
      }
    } else {
      const m = f16BitsToF32(view.getUint16(at + 2, true));
      for (let j = 0; j < 64; j++) {
        let q = (bytes[at + 4 + (j & 15)] >> (2 * (j >> 4))) & 3;
        if (type === 'Q3_A') q |= ((bytes[at + 20 + (j >> 3)] >> (j & 7)) & 1) << 2;
        out[b * 64 + j] = d * q + m; // d·q is exact; the float32 store rounds the sum as the kernels do
      }
    }
  }
  return out;
}
