/**
 * The plan's dtypes (docs/design.md §4). `f32 | bf16 | f16` (the plan's `dtype`) store the matrices of every class
 * unless the plan's `dtypes` names another storage for its routed experts or its attention projections, which may
 * also be GGUF's block-quantized `q8_0 | q4_0` (src/plan/quantize.ts). Norms, biases, routers and the shared-expert
 * gate are always F32; the embedding, LM head and shared expert stay at the plan's `dtype`.
 *
 * A tensor has an element type (what the runtime computes with, `TensorDtype`) and a storage in the weights file:
 * the same for F32/BF16/F16, and raw bytes (`U8`, the rows' last dimension counted in bytes) for quantized blocks.
 * Encoding goes through the safetensors module's converters so that the dense and sparse paths round alike.
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../checkpoint/safetensors';
import type { ModelConfig } from '../model/config';
import type { MatrixDtype, PlanClassDtypes, PlanDtype } from './plan_format';
import { dequantize, quantize, QUANT_BLOCK_BYTES, QUANT_BLOCK_VALUES, type QuantType } from './quantize';

export const PLAN_DTYPES: readonly PlanDtype[] = ['f32', 'bf16', 'f16'];

export const MATRIX_DTYPES: readonly MatrixDtype[] = ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'];

/** Element type of a plan tensor, as the runtime (and the native spec) names it. */
export type TensorDtype = 'F32' | 'BF16' | 'F16' | QuantType;
/** safetensors dtype of a stored plan tensor. */
export type StorageDtype = 'F32' | 'BF16' | 'F16' | 'U8';

export function tensorDtype(dtype: MatrixDtype): TensorDtype {
  return dtype === 'f32' ? 'F32' : dtype === 'bf16' ? 'BF16' : dtype === 'f16' ? 'F16' : dtype === 'q8_0' ? 'Q8_0' : 'Q4_0';
}

export function isQuantized(dtype: TensorDtype | MatrixDtype): boolean {
  return dtype === 'Q8_0' || dtype === 'Q4_0' || dtype === 'q8_0' || dtype === 'q4_0';
}

/** Bytes per weight, on average over a block for the quantized types (Q8_0: 34/32, Q4_0: 18/32). */
export function bytesPerWeight(dtype: TensorDtype | MatrixDtype): number {
  const t = dtype.toUpperCase() as TensorDtype;
  if (t === 'F32') return 4;
  if (t === 'Q8_0' || t === 'Q4_0') return QUANT_BLOCK_BYTES[t] / QUANT_BLOCK_VALUES;
  return 2;
}

/** How a tensor of logical `shape` is stored: quantized rows become their bytes (a multiple of 32 weights each). */
export function storageOf(dtype: TensorDtype, shape: readonly number[]): { dtype: StorageDtype; shape: number[] } {
  if (dtype !== 'Q8_0' && dtype !== 'Q4_0') return { dtype, shape: [...shape] };
  const row = shape[shape.length - 1];
  if (row % QUANT_BLOCK_VALUES !== 0) throw new Error(`${dtype}: rows of ${row} weights do not fill blocks of ${QUANT_BLOCK_VALUES}`);
  return { dtype: 'U8', shape: [...shape.slice(0, -1), (row / QUANT_BLOCK_VALUES) * QUANT_BLOCK_BYTES[dtype]] };
}

/** Bytes of a stored tensor of logical `shape`. */
export function tensorBytes(dtype: TensorDtype, shape: readonly number[]): number {
  const stored = storageOf(dtype, shape);
  return stored.shape.reduce((a, b) => a * b, 1) * (stored.dtype === 'F32' ? 4 : stored.dtype === 'U8' ? 1 : 2);
}

/** The little-endian bytes of `values` stored as `dtype` (round to nearest even for bf16/f16; GGUF's rounding for blocks). */
export function encodeTensor(values: Float32Array, dtype: TensorDtype): Buffer {
  if (dtype === 'Q8_0' || dtype === 'Q4_0') return quantize(values, dtype);
  const typed = dtype === 'F32' ? values : dtype === 'BF16' ? f32ToBf16(values) : f32ToF16(values);
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** The float32 values of `elements` values stored as `dtype` (encodeTensor undone, up to its rounding). */
export function decodeTensor(bytes: Uint8Array, dtype: TensorDtype, elements: number): Float32Array {
  if (dtype === 'Q8_0' || dtype === 'Q4_0') return dequantize(bytes, dtype, elements);
  const copy = new Uint8Array(bytes); // aligned for the typed views
  if (dtype === 'F32') return new Float32Array(copy.buffer, 0, elements);
  const halves = new Uint16Array(copy.buffer, 0, elements);
  return dtype === 'BF16' ? bf16ToF32(halves) : f16ToF32(halves);
}

/** The names `dsmoe convert --expert-dtype/--attn-dtype` take: the plan dtypes, q8 (Q8_0) and q4 (Q4_0). */
export const CLASS_DTYPE_FLAGS = ['f32', 'bf16', 'f16', 'q8', 'q4'] as const;
export type ClassDtypeFlag = (typeof CLASS_DTYPE_FLAGS)[number];

export function matrixDtypeOfFlag(flag: ClassDtypeFlag): MatrixDtype {
  return flag === 'q8' ? 'q8_0' : flag === 'q4' ? 'q4_0' : flag;
}

/**
 * Why `config` cannot store a class of matrices at these dtypes, one line per class (empty when it can): quantized
 * rows are whole blocks of 32 weights — the experts' rows are d (gate_up) and I (down) long, attention's d (qkv, o).
 */
export function classDtypeProblems(config: ModelConfig, classes: PlanClassDtypes): string[] {
  const rows = {
    experts: [['hidden_size', config.hidden_size], ['moe_intermediate_size', config.moe_intermediate_size]],
    attention: [['hidden_size', config.hidden_size]],
  } as const;
  const problems: string[] = [];
  for (const cls of ['experts', 'attention'] as const) {
    const dtype = classes[cls];
    const bad = rows[cls].find(([, n]) => n % QUANT_BLOCK_VALUES !== 0);
    if (isQuantized(dtype) && bad) {
      problems.push(`${cls} at ${dtype}: blocks of ${QUANT_BLOCK_VALUES} weights need rows of a multiple of ${QUANT_BLOCK_VALUES}, but config.${bad[0]} is ${bad[1]}`);
    }
  }
  return problems;
}
