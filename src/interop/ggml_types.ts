/**
 * The ggml tensor types a GGUF export writes, with their block layouts (ggml's `ggml-common.h`, `ggml-quants.c`):
 *
 * - F32, F16, BF16: one value per element, little-endian.
 * - Q8_0: blocks of 32 values, `{ f16 d; int8 qs[32] }` (34 bytes); value = qs[i]·d, d = max|x| / 127.
 * - Q4_0: blocks of 32 values, `{ f16 d; uint8 qs[16] }` (18 bytes); value = (nibble − 8)·d, element j in the low
 *   nibble of qs[j] and element j + 16 in its high nibble, d = (the value of largest magnitude) / −8.
 *
 * Blocks run along ne[0], a tensor's fastest dimension, so a quantized tensor's ne[0] must be a multiple of 32.
 * The quantized blocks are src/plan/quantize.ts's (the same bytes a quantized plan stores, and `llama-quantize` writes).
 */
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32 } from '../checkpoint/safetensors';
import { dequantize, quantize } from '../plan/quantize';

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

/** Values per Q8_0 / Q4_0 block: the row lengths a quantized GGUF export needs a multiple of. */
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
    case 'Q4_0':
      return quantize(values, type);
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
