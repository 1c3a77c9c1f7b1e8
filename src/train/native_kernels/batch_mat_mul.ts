import * as tf from '@tensorflow/tfjs';
import { BackendKind } from './backend_tensors';
import { NativeMatMulContext, nativeMatMul } from './native_matmul';

/**
 * tfjs's `BatchMatMul` (every `tf.matMul`, and the matMuls of its gradient) on the addon's gemm: every
 * transposeA/transposeB combination, any rank ≥ 2, broadcast batch dimensions. Non-float32 inputs go to the
 * backend's own kernel.
 */
export function batchMatMulKernel(ctx: NativeMatMulContext, kind: BackendKind, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    return nativeMatMul(ctx, kind, args.backend as tf.KernelBackend, a, b, !!transposeA, !!transposeB).info;
  };
}
