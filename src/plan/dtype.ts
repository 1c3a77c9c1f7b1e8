/**
 * The plan's dtypes (docs/design.md §4). `f32 | bf16 | f16` (the plan's `dtype`) store the matrices of every class
 * unless the plan's `dtypes` names another storage for its routed experts or its attention projections, which may
 * also be block-quantized: GGUF's `q8_0 | q4_0` or the affine `q3_a | q2_a` (src/plan/quantize.ts). Norms, biases, routers and the shared-expert
 * gate are always F32; the embedding, LM head and shared expert stay at the plan's `dtype`.
 *
 * A tensor has an element type (what the runtime computes with, `TensorDtype`) and a storage in the weights file:
 * the same for F32/BF16/F16, and raw bytes (`U8`, the rows' last dimension counted in bytes) for quantized blocks.
 * Encoding goes through the safetensors module's converters so that the dense and sparse paths round alike.
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../checkpoint/safetensors';
import { attentionExperts, headDim, headsPerAttentionExpert, type ModelConfig } from '../model/config';
import type { MatrixDtype, PlanClassDtypes, PlanDtype } from './plan_format';
import { dequantize, quantize, QUANT_BLOCK, type QuantType } from './quantize';

export const PLAN_DTYPES: readonly PlanDtype[] = ['f32', 'bf16', 'f16'];

/** Every storage a class of matrices may have: the one list the CLI flags, validation and reports draw from. */
export const MATRIX_DTYPES: readonly MatrixDtype[] = ['f32', 'bf16', 'f16', 'q8_0', 'q4_0', 'q3_a', 'q2_a'];

const QUANT_TYPE_OF: Partial<Record<MatrixDtype, QuantType>> = { q8_0: 'Q8_0', q4_0: 'Q4_0', q3_a: 'Q3_A', q2_a: 'Q2_A' };

/** Element type of a plan tensor, as the runtime (and the native spec) names it. */
export type TensorDtype = 'F32' | 'BF16' | 'F16' | QuantType;
/** safetensors dtype of a stored plan tensor. */
export type StorageDtype = 'F32' | 'BF16' | 'F16' | 'U8';

export function tensorDtype(dtype: MatrixDtype): TensorDtype {
  return QUANT_TYPE_OF[dtype] ?? (dtype === 'f32' ? 'F32' : dtype === 'bf16' ? 'BF16' : 'F16');
}

function quantType(dtype: TensorDtype | MatrixDtype): QuantType | undefined {
  const t = dtype.toUpperCase();
  return t in QUANT_BLOCK ? (t as QuantType) : undefined;
}

export function isQuantized(dtype: TensorDtype | MatrixDtype): boolean {
  return quantType(dtype) !== undefined;
}

/** Weights per block of a quantized type (32 for Q8_0 / Q4_0, 64 for Q3_A / Q2_A); 1 for the others. */
export function blockValues(dtype: TensorDtype | MatrixDtype): number {
  const t = quantType(dtype);
  return t ? QUANT_BLOCK[t].values : 1;
}

/** Bytes per weight, on average over a block for the quantized types (Q8_0: 34/32, Q4_0: 18/32, Q3_A: 28/64, Q2_A: 20/64). */
export function bytesPerWeight(dtype: TensorDtype | MatrixDtype): number {
  const t = quantType(dtype);
  if (t) return QUANT_BLOCK[t].bytes / QUANT_BLOCK[t].values;
  return dtype.toUpperCase() === 'F32' ? 4 : 2;
}

/** How a tensor of logical `shape` is stored: quantized rows become their bytes (a whole number of blocks each). */
export function storageOf(dtype: TensorDtype, shape: readonly number[]): { dtype: StorageDtype; shape: number[] } {
  const t = quantType(dtype);
  if (!t) return { dtype: dtype as StorageDtype, shape: [...shape] };
  const row = shape[shape.length - 1];
  const { values, bytes } = QUANT_BLOCK[t];
  if (row % values !== 0) throw new Error(`${dtype}: rows of ${row} weights do not fill blocks of ${values}`);
  return { dtype: 'U8', shape: [...shape.slice(0, -1), (row / values) * bytes] };
}

/** Bytes of a stored tensor of logical `shape`. */
export function tensorBytes(dtype: TensorDtype, shape: readonly number[]): number {
  const stored = storageOf(dtype, shape);
  return stored.shape.reduce((a, b) => a * b, 1) * (stored.dtype === 'F32' ? 4 : stored.dtype === 'U8' ? 1 : 2);
}

/** The little-endian bytes of `values` stored as `dtype` (round to nearest even for bf16/f16; GGUF's rounding for blocks). */
export function encodeTensor(values: Float32Array, dtype: TensorDtype): Buffer {
  const t = quantType(dtype);
  if (t) return quantize(values, t);
  const typed = dtype === 'F32' ? values : dtype === 'BF16' ? f32ToBf16(values) : f32ToF16(values);
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** The float32 values of `elements` values stored as `dtype` (encodeTensor undone, up to its rounding). */
export function decodeTensor(bytes: Uint8Array, dtype: TensorDtype, elements: number): Float32Array {
  const t = quantType(dtype);
  if (t) return dequantize(bytes, t, elements);
  const copy = new Uint8Array(bytes); // aligned for the typed views
  if (dtype === 'F32') return new Float32Array(copy.buffer, 0, elements);
  const halves = new Uint16Array(copy.buffer, 0, elements);
  return dtype === 'BF16' ? bf16ToF32(halves) : f16ToF32(halves);
}

/** The names `dsmoe convert --expert-dtype/--attn-dtype` take: the plan dtypes, q8 (Q8_0), q4 (Q4_0), q3 (Q3_A), q2 (Q2_A). */
export const CLASS_DTYPE_FLAGS = ['f32', 'bf16', 'f16', 'q8', 'q4', 'q3', 'q2'] as const;
export type ClassDtypeFlag = (typeof CLASS_DTYPE_FLAGS)[number];

const MATRIX_DTYPE_OF_FLAG: Record<ClassDtypeFlag, MatrixDtype> = {
  f32: 'f32', bf16: 'bf16', f16: 'f16', q8: 'q8_0', q4: 'q4_0', q3: 'q3_a', q2: 'q2_a',
};

export function matrixDtypeOfFlag(flag: ClassDtypeFlag): MatrixDtype {
  return MATRIX_DTYPE_OF_FLAG[flag];
}

/**
 * Why `config` cannot store a class of matrices at these dtypes, one line per class (empty when it can): quantized
 * rows are whole blocks (of 32 weights, or 64 for q3_a / q2_a) — the experts' rows are d (gate_up) and I (down)
 * long, attention's d (qkv, o). In a MoA layer (docs/design.md §12) W_o is stored per attention expert, [d, N_h·hd],
 * so its rows are one attention expert's width N_h·hd.
 */
export function classDtypeProblems(config: ModelConfig, classes: PlanClassDtypes): string[] {
  const A = attentionExperts(config);
  const rows: Record<keyof PlanClassDtypes, [string, number][]> = {
    experts: [['config.hidden_size is', config.hidden_size], ['config.moe_intermediate_size is', config.moe_intermediate_size]],
    attention: [
      ['config.hidden_size is', config.hidden_size],
      ...(A > 0
        ? [[`the attention expert's width heads_per_attention_expert × head_dim = ${headsPerAttentionExpert(config)} × ${headDim(config)} is`, headsPerAttentionExpert(config) * headDim(config)] as [string, number]]
        : []),
    ],
  };
  const problems: string[] = [];
  for (const cls of ['experts', 'attention'] as const) {
    const dtype = classes[cls];
    const block = blockValues(dtype);
    const bad = rows[cls].find(([, n]) => n % block !== 0);
    if (isQuantized(dtype) && bad) {
      problems.push(`${cls} at ${dtype}: blocks of ${block} weights need rows of a multiple of ${block}, but ${bad[0]} ${bad[1]}`);
    }
  }
  return problems;
}
