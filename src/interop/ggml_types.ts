/**
 * The ggml tensor types a GGUF export writes, with their block layouts (ggml's `ggml-common.h`, `ggml-quants.c`):
 *
 * - F32, F16, BF16: one value per element, little-endian.
 * - Q8_0: blocks of 32 values, `{ f16 d; int8 qs[32] }` (34 bytes); value = qs[i]·d, d = max|x| / 127.
 * - Q4_0: blocks of 32 values, `{ f16 d; uint8 qs[16] }` (18 bytes); value = (nibble − 8)·d, element j in the low
 *   nibble of qs[j] and element j + 16 in its high nibble, d = (the value of largest magnitude) / −8.
 *
 * Blocks run along ne[0], a tensor's fastest dimension, so a quantized tensor's ne[0] must be a multiple of 32.
 * Quantization follows ggml's reference (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) step by step in float32
 * arithmetic, so the bytes equal those `llama-quantize` writes from the same float32 values.
 */
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32 } from '../checkpoint/safetensors';

export type GgmlType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';

/** ggml's `enum ggml_type` values. */
export const GGML_TYPE_ID: Record<GgmlType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 };

/** Values per block and bytes per block. */
export const GGML_BLOCK: Record<GgmlType, { values: number; bytes: number }> = {
  F32: { values: 1, bytes: 4 },
  F16: { values: 1, bytes: 2 },
  BF16: { values: 1, bytes: 2 },
  Q8_0: { values: 32, bytes: 34 },
  Q4_0: { values: 32, bytes: 18 },
};

export const QUANT_BLOCK_VALUES = 32;

/** Bytes of a tensor of `elements` values stored as `type` (elements must fill whole blocks). */
export function ggmlByteLength(type: GgmlType, elements: number): number {
  const block = GGML_BLOCK[type];
  if (elements % block.values !== 0) throw new Error(`ggml ${type}: ${elements} values do not fill blocks of ${block.values}`);
  return (elements / block.values) * block.bytes;
}

/** The bytes of `values` stored as `type`. */
export function encodeGgml(values: Float32Array, type: GgmlType): Buffer {
  switch (type) {
    case 'F32':
      return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    case 'F16':
      return typedBytes(f32ToF16(values));
    case 'BF16':
      return typedBytes(f32ToBf16(values));
    case 'Q8_0':
      return quantizeQ8_0(values);
    case 'Q4_0':
      return quantizeQ4_0(values);
  }
}

/** The float32 values of bytes stored as `type` (the inverse of encodeGgml up to its rounding). */
export function decodeGgml(bytes: Uint8Array, type: GgmlType, elements: number): Float32Array {
  const expected = ggmlByteLength(type, elements);
  if (bytes.byteLength !== expected) throw new Error(`ggml ${type}: ${elements} values need ${expected} bytes, got ${bytes.byteLength}`);
  const copy = new Uint8Array(bytes); // aligned copy for the typed views below
  switch (type) {
    case 'F32':
      return new Float32Array(copy.buffer, 0, elements);
    case 'F16':
      return f16ToF32(new Uint16Array(copy.buffer, 0, elements));
    case 'BF16':
      return bf16ToF32(new Uint16Array(copy.buffer, 0, elements));
    case 'Q8_0':
    case 'Q4_0':
      return dequantize(copy, type, elements);
  }
}

function typedBytes(array: Uint16Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

/** C's roundf: half away from zero (Math.round rounds −2.5 to −2). */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

function quantizeQ8_0(values: Float32Array): Buffer {
  const blocks = ggmlByteLength('Q8_0', values.length) / 34;
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
  const blocks = ggmlByteLength('Q4_0', values.length) / 18;
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

function dequantize(bytes: Uint8Array, type: 'Q8_0' | 'Q4_0', elements: number): Float32Array {
  const out = new Float32Array(elements);
  const blockBytes = GGML_BLOCK[type].bytes;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const halfScale = new Uint16Array(1);
  for (let b = 0; b < elements / 32; b++) {
    const at = b * blockBytes;
    halfScale[0] = view.getUint16(at, true);
    const d = f16ToF32(halfScale)[0];
    for (let j = 0; j < (type === 'Q8_0' ? 32 : 16); j++) {
      if (type === 'Q8_0') {
        out[b * 32 + j] = view.getInt8(at + 2 + j) * d;
      } else {
        const q = bytes[at + 2 + j];
        out[b * 32 + j] = ((q & 0x0f) - 8) * d;
        out[b * 32 + 16 + j] = ((q >> 4) - 8) * d;
      }
    }
  }
  return out;
}
