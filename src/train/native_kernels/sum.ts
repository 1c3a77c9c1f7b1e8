import * as tf from '@tensorflow/tfjs';
import { BackendKind, float32Output, float32View } from './backend_tensors';

/**
 * tfjs's `Sum` over leading axes of a float32 tensor (a bias's gradient: [N, d] summed over the N rows) as one pass
 * over the rows into f64 column sums, read in place. tfjs-wasm transposes the reduced axes to the end and then sums
 * rows on one thread: the qkv bias gradient ([1024, 640] over axis 0) took 6.5 ms a call, 52 ms of a 0.84 s small
 * training step. Every other reduction (trailing or interleaved axes, all axes, other dtypes) goes to the backend.
 */
export function leadingAxesSumKernel(kind: BackendKind, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[] | null; keepDims: boolean };
    const rank = x.shape.length;
    if (x.dtype !== 'float32' || rank < 2) return fallback(args);
    const axes = [...new Set(tf.util.parseAxisParam(axis ?? [], x.shape))].sort((a, b) => a - b);
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    if (!leading) return fallback(args);
    const rows = x.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
    const kept = x.shape.slice(axes.length);
    const cols = kept.reduce((a, b) => a * b, 1);
    const backend = args.backend as tf.KernelBackend;
    const sums = new Float64Array(cols);
    const source = float32View(kind, backend, x);
    for (let r = 0, at = 0; r < rows; r++, at += cols) for (let c = 0; c < cols; c++) sums[c] += source[at + c];
    const out = float32Output(kind, backend, keepDims ? [...axes.map(() => 1), ...kept] : kept);
    out.values.set(sums); // the output's view, taken at its allocation, is still valid: nothing allocated since
    return out.info;
  };
}
