import * as tf from '@tensorflow/tfjs';
import type { AdamWKernelOptions, NativeKernels } from '../../runtime/native';
import { BackendKind, float32View } from './backend_tensors';

/**
 * The optimizer step's element-wise work on the addon (native/src/kernels/adamw.h): the AdamW update of each
 * parameter in place, and the sums of squares of the global-norm clip — one multithreaded pass per tensor instead
 * of tfjs's ~17 single-threaded element-wise kernels per parameter. `registerNativeKernels` installs it for its
 * backend; `src/train/adamw.ts` uses it when the active backend has one and tfjs's kernels otherwise.
 *
 * In place: params and moments are tf.Variables whose storage the update overwrites (their dataIds stay), as
 * tfjs's own `assign` would replace it. The views are taken per call (the wasm heap may have grown since).
 */
export interface NativeOptimizer {
  /** One AdamW step of `param`, `m` and `v` from `grad` (read only). */
  adamw(param: tf.Tensor, grad: tf.Tensor, m: tf.Tensor, v: tf.Tensor, step: Omit<AdamWKernelOptions, 'threads' | 'impl'>): void;
  /** Σ g² over a tensor, in double. */
  sumSquares(x: tf.Tensor): number;
}

const installed = new Map<string, NativeOptimizer>(); // by tfjs backend name

export function installNativeOptimizer(kind: BackendKind, kernels: Pick<NativeKernels, 'adamw' | 'sumSquares'>, threads: number): void {
  const view = (t: tf.Tensor) => {
    if (t.dtype !== 'float32') throw new Error(`native optimizer: expected float32 tensors, got ${t.dtype}`);
    return float32View(kind, tf.backend(), t as unknown as tf.TensorInfo);
  };
  installed.set(kind, {
    adamw: (param, grad, m, v, step) => kernels.adamw(view(param), view(grad), view(m), view(v), { ...step, threads }),
    sumSquares: (x) => kernels.sumSquares(view(x), { threads }),
  });
}

export function uninstallNativeOptimizer(kind: string): void {
  installed.delete(kind);
}

/** The native optimizer kernels of the active backend, or null (tfjs's kernels then). */
export function activeNativeOptimizer(): NativeOptimizer | null {
  return installed.get(tf.getBackend()) ?? null;
}
