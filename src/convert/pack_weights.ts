/**
 * Packs dense (Qwen2-MoE named) tensors into a plan's runtime layout and streams them into the plan's weights file,
 * one packed tensor in memory at a time. What goes where is the plan tensor table (src/plan/tensor_table.ts):
 * each packed tensor is its dense parts, concatenated.
 */
import type { ReferenceWeights } from '../model/reference';
import type { Plan } from '../plan/plan_format';
import { planTensors, type PlanTensor } from '../plan/tensor_table';
import { encodeTensor } from '../plan/dtype';
import { StreamingSafetensorsWriter } from '../checkpoint/streaming_safetensors_writer';

/** One packed tensor (f32) from the dense weights: its parts' values, one block after the other. */
function packTensor(tensor: PlanTensor, dense: ReferenceWeights): Float32Array {
  if (tensor.zero) return new Float32Array(tensor.shape.reduce((a, b) => a * b, 1)); // a dense layer's router
  const parts = tensor.parts.map((part) => dense.get(part.name));
  if (parts.length === 1) return parts[0]; // no copy of a large embedding or LM head
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0)); // [shape]
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Writes the plan's weights file from dense weights, in the table's order. */
export function writePackedWeights(file: string, plan: Plan, dense: ReferenceWeights, metadata: Record<string, string>): void {
  const tensors = planTensors(plan);
  const writer = new StreamingSafetensorsWriter(file, tensors.map(({ name, storage }) => ({ name, ...storage })), metadata);
  try {
    for (const tensor of tensors) {
      const values = packTensor(tensor, dense);
      const expected = tensor.shape.reduce((a, b) => a * b, 1);
      if (values.length !== expected) {
        throw new Error(`packing ${tensor.name}: built ${values.length} values, the layout needs ${expected} ([${tensor.shape.join(', ')}])`);
      }
      writer.write(encodeTensor(values, tensor.dtype));
    }
    writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  }
}
