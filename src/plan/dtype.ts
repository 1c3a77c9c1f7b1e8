/**
 * The plan's dtypes: `f32 | bf16 | f16` name the storage of matrices (docs/design.md §4); everything else is F32.
 * Encoding goes through the safetensors module's converters so that the dense and sparse paths round alike.
 */
import { f32ToBf16, f32ToF16 } from '../checkpoint/safetensors';
import type { PlanDtype } from './plan_format';

/** safetensors dtype names of the tensors a plan stores. */
export type PackedDtype = 'F32' | 'BF16' | 'F16';

export const PLAN_DTYPES: readonly PlanDtype[] = ['f32', 'bf16', 'f16'];

export function packedDtype(dtype: PlanDtype): PackedDtype {
  return dtype === 'f32' ? 'F32' : dtype === 'bf16' ? 'BF16' : 'F16';
}

export function bytesPerElement(dtype: PlanDtype | PackedDtype): number {
  return dtype === 'f32' || dtype === 'F32' ? 4 : 2;
}

/** The little-endian bytes of `values` stored as `dtype` (round to nearest even for bf16/f16). */
export function encodeTensor(values: Float32Array, dtype: PackedDtype): Buffer {
  const typed = dtype === 'F32' ? values : dtype === 'BF16' ? f32ToBf16(values) : f32ToF16(values);
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
}
