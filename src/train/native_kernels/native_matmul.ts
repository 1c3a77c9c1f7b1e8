import * as tf from '@tensorflow/tfjs';
import type { NativeKernels } from '../../runtime/native';
import { BackendKind, float32Output, float32View } from './backend_tensors';
import { matMulGeometry } from './matmul_geometry';

/** Which addon kernels the training kernels call, and on how many threads. */
export interface NativeMatMulContext {
  kernels: Pick<NativeKernels, 'gemm'>;
  threads: number;
  /** 'bf16': operands rounded to bf16 in the GEMM's packers, products summed in f32 (train.compute_dtype) */
  compute: ComputeDtype;
}

/** The matrix products' arithmetic: f32, or bf16 operands with f32 sums (AVX-512 BF16). Weights stay f32. */
export type ComputeDtype = 'f32' | 'bf16';
export const computeDtypes: ComputeDtype[] = ['f32', 'bf16'];

/**
 * op(a) · op(b) over broadcast batch dimensions into a new float32 tensor of the backend: one addon gemm call for
 * every batch entry (multithreaded over the entries' tiles, vectorized; transposed operands are read by its packers,
 * not copied). Inputs are read in place from the backend's storage and the product is written in place into the
 * output's storage. Returns the output and a view of its values (valid until the backend's next allocation).
 */
export function nativeMatMul(
  ctx: NativeMatMulContext,
  kind: BackendKind,
  backend: tf.KernelBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): { info: tf.TensorInfo; values: Float32Array } {
  const g = matMulGeometry(a.shape, b.shape, transposeA, transposeB);
  const { M, N, K } = g;
  const out = float32Output(kind, backend, g.outShape); // [...batch, M, N]
  // Views after the output's allocation: on wasm an allocation may have replaced the heap's ArrayBuffer.
  const aValues = float32View(kind, backend, a); // [...batchA, M, K] or [..., K, M]
  const bValues = float32View(kind, backend, b); // [...batchB, K, N] or [..., N, K]
  const values = float32View(kind, backend, out.info);
  const count = g.aBatch.length;
  if (M * N * count === 0) return { info: out.info, values };
  if (K === 0) {
    values.fill(0); // an empty sum
    return { info: out.info, values };
  }
  const identity = (index: Int32Array) => index.every((entry, e) => entry === e);
  ctx.kernels.gemm(aValues, bValues, M, N, K, transposeA, transposeB, {
    threads: ctx.threads,
    out: values,
    count,
    compute: ctx.compute,
    // Broadcast batch dimensions read one entry of an operand for several outputs; otherwise entry e reads entry e.
    aIndex: identity(g.aBatch) ? undefined : g.aBatch,
    bIndex: identity(g.bBatch) ? undefined : g.bBatch,
  });
  return { info: out.info, values };
}
