import * as tf from '@tensorflow/tfjs';
import { BackendKind, float32Output, float32View } from './backend_tensors';

/**
 * tfjs's `Slice` for float32 tensors on wasm, reading the input in place: the wasm backend's own kernel first copies
 * the whole input out of the heap (`readSync`), which made the attention's three q/k/v slices of the fused
 * projection ≈ 5 % of a native training step. Each innermost run of the slice is one TypedArray copy. Other dtypes
 * and backends go to the backend's kernel.
 */
export function viewSliceKernel(kind: BackendKind, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
    const rank = x.shape.length;
    const [begin_, size_] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size);
    if (size_.some((s) => s === 0) || begin_.length !== rank) return fallback(args);
    const backend = args.backend as tf.KernelBackend;
    const { info, values: target } = float32Output(kind, backend, size_); // nothing allocates after it: the view holds
    const source = float32View(kind, backend, x); // taken after the output's allocation: the heap may have grown
    const strides = tf.util.computeStrides(x.shape); // rank − 1 strides; the last axis is contiguous
    const run = size_[rank - 1];
    const outer = size_.slice(0, rank - 1);
    const index = new Array<number>(rank - 1).fill(0); // position within `outer`
    const runs = outer.reduce((a, v) => a * v, 1);
    for (let r = 0, at = 0; r < runs; r++, at += run) {
      let from = begin_[rank - 1];
      for (let a = 0; a < rank - 1; a++) from += (begin_[a] + index[a]) * strides[a];
      target.set(source.subarray(from, from + run), at);
      for (let a = rank - 2; a >= 0; a--) {
        if (++index[a] < outer[a]) break;
        index[a] = 0;
      }
    }
    return info;
  };
}
