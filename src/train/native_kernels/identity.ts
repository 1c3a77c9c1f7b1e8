import * as tf from '@tensorflow/tfjs';

/**
 * tfjs's `Identity` without a copy: the output shares the input's storage, as the wasm backend's own Reshape and
 * the cpu backend's Identity already do (tensors are immutable; storage is freed when its reference count drops to
 * zero). The wasm backend's Identity copies, and a training step calls it ~900 times (customGrad, gradient
 * bookkeeping): ≈ 5% of a step once the products are native. String tensors go to the backend's kernel.
 */
export function aliasingIdentityKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return fallback(args);
    (args.backend as tf.KernelBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}
