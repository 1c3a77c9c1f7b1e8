/**
 * GGUF's (llama.cpp's) Q8_0 and Q4_0 block formats, byte for byte, for quantized plan matrices and GGUF export:
 *
 * - Q8_0: blocks of 32 values, `{ f16 d; int8 qs[32] }` (34 bytes); value = qs[i]·d, d = max|x| / 127.
 * - Q4_0: blocks of 32 values, `{ f16 d; uint8 qs[16] }` (18 bytes); value = (nibble − 8)·d, element j in the low
 *   nibble of qs[j] and element j + 16 in its high nibble, d = (the value of largest magnitude) / −8.
 *
 * Blocks run along a matrix's rows (its last dimension), so a quantized row holds a whole number of blocks.
 * Quantization follows ggml's reference (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) and the runtime's
 * `quantize_row` (native/src/common/dtype.h) step by step in float32 arithmetic, so the bytes equal those
 * `llama-quantize` and the C++ write from the same float32 values (test/plan/quantize.test.ts checks both).
 */
import { f16ToF32, f32ToF16 } from '../checkpoint/safetensors';

export type QuantType = 'Q8_0' | 'Q4_0';

export const QUANT_BLOCK_VALUES = 32;
export const QUANT_BLOCK_BYTES: Record<QuantType, number> = { Q8_0: 34, Q4_0: 18 };

/** Bytes of `elements` values stored as `type` (elements must fill whole blocks). */
export function quantizedByteLength(type: QuantType, elements: number): number {
  if (elements % QUANT_BLOCK_VALUES !== 0) throw new Error(`${type}: ${elements} values do not fill blocks of ${QUANT_BLOCK_VALUES}`);
  return (elements / QUANT_BLOCK_VALUES) * QUANT_BLOCK_BYTES[type];
}

/** The blocks of `values` (a multiple of 32 of them) as `type`. */
export function quantize(values: Float32Array, type: QuantType): Buffer {
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

/** The float32 values of `elements` values stored as `type` (exact: an f16 scale times a small integer). */
export function dequantize(bytes: Uint8Array, type: QuantType, elements: number): Float32Array {
  const expected = quantizedByteLength(type, elements);
  if (bytes.byteLength !== expected) throw new Error(`${type}: ${elements} values need ${expected} bytes, got ${bytes.byteLength}`);
  const out = new Float32Array(elements);
  const blockBytes = QUANT_BLOCK_BYTES[type];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const halfScales = new Uint16Array(elements / 32);
  for (let b = 0; b < halfScales.length; b++) halfScales[b] = view.getUint16(b * blockBytes, true);
  const scales = f16ToF32(halfScales);
  for (let b = 0; b < scales.length; b++) {
    const at = b * blockBytes;
    const d = scales[b];
    if (type === 'Q8_0') {
      for (let j = 0; j < 32; j++) out[b * 32 + j] = view.getInt8(at + 2 + j) * d;
    } else {
      for (let j = 0; j < 16; j++) {
        const q = bytes[at + 2 + j];
        out[b * 32 + j] = ((q & 0x0f) - 8) * d;
        out[b * 32 + 16 + j] = ((q >> 4) - 8) * d;
      }
    }
  }
  return out;
}
