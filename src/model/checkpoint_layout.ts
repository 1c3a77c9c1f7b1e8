import type { ModelConfig } from './config';
import { paramSpecs } from './params';
import { denseTensors, type DenseTensor, type TrainingPiece } from '../plan/tensor_table';

/**
 * Converts between the training layout (`params.ts`: matrices [in, out], experts side by side, fused QKV) and the
 * Qwen2-MoE tensors of a dense checkpoint (`[out, in]`, one tensor per expert projection; docs/design.md §2). Every
 * dense tensor is one piece of one training parameter (src/plan/tensor_table.ts), so the same rows convert weights
 * and AdamW moments (element-wise state) in both directions, exactly (a permutation of values).
 */

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Training-layout arrays → Qwen2-MoE tensors, in checkpoint order. */
export function toCheckpointTensors(
  config: ModelConfig,
  arrays: Map<string, Float32Array>,
): { name: string; shape: number[]; data: Float32Array }[] {
  const shapes = new Map(paramSpecs(config).map((s) => [s.name, s.shape]));
  return denseTensors(config).map((tensor) => {
    const out = new Float32Array(size(tensor.shape)); // [shape]; stays zero for the untrained zero gate
    if (tensor.training) {
      const src = arrays.get(tensor.training.param);
      if (!src) throw new Error(`no values for parameter ${tensor.training.param}`);
      const cols = (shapes.get(tensor.training.param) as number[])[1];
      copyPiece(tensor, tensor.training, src, cols, out, 'to-checkpoint');
    }
    return { name: tensor.name, shape: tensor.shape, data: out };
  });
}

/** Qwen2-MoE tensors (looked up by name) → training-layout arrays. */
export function fromCheckpointTensors(config: ModelConfig, get: (name: string) => Float32Array): Map<string, Float32Array> {
  const arrays = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const spec of paramSpecs(config)) {
    arrays.set(spec.name, new Float32Array(size(spec.shape)));
    shapes.set(spec.name, spec.shape);
  }
  for (const tensor of denseTensors(config)) {
    if (!tensor.training) continue;
    const cols = (shapes.get(tensor.training.param) as number[])[1];
    copyPiece(tensor, tensor.training, arrays.get(tensor.training.param) as Float32Array, cols, get(tensor.name), 'from-checkpoint');
  }
  return arrays;
}

/** Moves one piece between a training tensor `src` (row length `cols`) and its checkpoint tensor `hf`. */
function copyPiece(
  tensor: DenseTensor,
  piece: TrainingPiece,
  src: Float32Array,
  cols: number,
  hf: Float32Array,
  direction: 'to-checkpoint' | 'from-checkpoint',
): void {
  const toHf = direction === 'to-checkpoint';
  if (piece.kind === 'contiguous') {
    const n = size(tensor.shape);
    if (toHf) hf.set(src.subarray(piece.offset, piece.offset + n));
    else src.set(hf.subarray(0, n), piece.offset);
    return;
  }
  if (piece.kind === 'columns') {
    // hf [width, rows] = transpose of src[:, offset : offset + width]
    const [width, rows] = tensor.shape;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < width; j++) {
        const s = r * cols + piece.offset + j;
        if (toHf) hf[j * rows + r] = src[s];
        else src[s] = hf[j * rows + r];
      }
    }
    return;
  }
  // rows: hf [cols, height] = transpose of src[offset : offset + height, :]
  const height = tensor.shape[1];
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < cols; c++) {
      const s = (piece.offset + r) * cols + c;
      if (toHf) hf[c * height + r] = src[s];
      else src[s] = hf[c * height + r];
    }
  }
}
