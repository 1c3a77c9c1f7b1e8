import * as tf from '@tensorflow/tfjs';
import { oneHotRows } from './one_hot';

/**
 * Element-wise chains of the model as single tfjs kernels where the backend has them (the addon's fused kernels,
 * registered by src/train/native_kernels for wasm and cpu), and as tfjs compositions elsewhere. Each op's
 * gradient is one kernel too (registered below with tf.registerGradient); the compositions are the reference
 * (test/train/native_kernels/fused_ops.test.ts compares values and gradients).
 */
export const fusedKernelNames = {
  routedSwiglu: 'DsmoeRoutedSwiGLU', // inputs gate, up, w; attrs experts, width → [N, E·I]
  routedSwigluGrad: 'DsmoeRoutedSwiGLUGrad', // inputs gate, up, w, dy → dgate, dup, dw
  softmaxXent: 'DsmoeSoftmaxXent', // input logits; attr targets → [N]
  softmaxXentGrad: 'DsmoeSoftmaxXentGrad', // inputs logits, dy; attr targets → dlogits
  rmsNorm: 'DsmoeRmsNorm', // inputs x, weight; attr eps → [N, d]
  rmsNormGrad: 'DsmoeRmsNormGrad', // inputs x, weight, dy; attr eps → dx, dweight
  causalSoftmax: 'DsmoeCausalSoftmax', // input x [..., C]; attrs scale, period → y
  causalSoftmaxGrad: 'DsmoeCausalSoftmaxGrad', // inputs y, dy; attr scale → dx
} as const;

/** Backends on which the fused kernels are registered; the native kernels' registry keeps it. */
const fusedBackends = new Set<string>();

export function setFusedOps(backendName: string, on: boolean): void {
  if (on) fusedBackends.add(backendName);
  else fusedBackends.delete(backendName);
}

/** Whether the active backend runs the fused kernels. */
export function fusedOps(): boolean {
  return fusedBackends.size > 0 && fusedBackends.has(tf.getBackend());
}

tf.registerGradient({
  kernelName: fusedKernelNames.routedSwiglu,
  inputsToSave: ['gate', 'up', 'w'],
  gradFunc: (dy, saved, attrs) => {
    const [gate, up, w] = saved;
    const [dgate, dup, dw] = tf.engine().runKernel(fusedKernelNames.routedSwigluGrad, { gate, up, w, dy: dy as tf.Tensor }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return { gate: () => dgate, up: () => dup, w: () => dw };
  },
});

tf.registerGradient({
  kernelName: fusedKernelNames.softmaxXent,
  inputsToSave: ['logits'],
  gradFunc: (dy, saved, attrs) => {
    const [logits] = saved;
    return { logits: () => tf.engine().runKernel(fusedKernelNames.softmaxXentGrad, { logits, dy: dy as tf.Tensor }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor };
  },
});

tf.registerGradient({
  kernelName: fusedKernelNames.rmsNorm,
  inputsToSave: ['x', 'weight'],
  gradFunc: (dy, saved, attrs) => {
    const [x, weight] = saved;
    const [dx, dweight] = tf.engine().runKernel(fusedKernelNames.rmsNormGrad, { x, weight, dy: dy as tf.Tensor }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return { x: () => dx, weight: () => dweight };
  },
});

tf.registerGradient({
  kernelName: fusedKernelNames.causalSoftmax,
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [y] = saved;
    return { x: () => tf.engine().runKernel(fusedKernelNames.causalSoftmaxGrad, { y, dy: dy as tf.Tensor }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor };
  },
});

/**
 * Attention weights from raw scores: softmax over the last axis of `scale`·scores + mask, where `mask` is
 * groupedCausalMask's (row r at position r mod `period` keeps columns ≤ that position): scores [B', R', C] with
 * R' a multiple of `period` → [B', R', C]. The fused kernel folds the scale and the mask in (masked weights are
 * exactly 0, as exp(−1e9) is in f32).
 */
export function causalSoftmax(scores: tf.Tensor3D, scale: number, period: number, mask: tf.Tensor2D): tf.Tensor3D {
  if (fusedOps()) return tf.engine().runKernel(fusedKernelNames.causalSoftmax, { x: scores }, { scale, period }) as tf.Tensor3D;
  return tf.softmax(tf.add(tf.mul(scores, scale), mask)) as tf.Tensor3D;
}

/** `x / sqrt(mean(x²) + eps) ⊙ weight` over the last axis (docs/design.md §1): x [N, d], weight [d]. */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  if (fusedOps()) return tf.engine().runKernel(fusedKernelNames.rmsNorm, { x, weight }, { eps }) as tf.Tensor2D;
  const meanSquare = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight) as tf.Tensor2D; // [N, d]
}

/**
 * silu(gate) ⊙ up with expert e's I hidden units scaled by its routing weight w[:, e]: gate, up [N, E·I]
 * (experts side by side), w [N, E] → [N, E·I].
 */
export function routedSwiglu(gate: tf.Tensor2D, up: tf.Tensor2D, w: tf.Tensor2D, experts: number, width: number): tf.Tensor2D {
  if (fusedOps()) {
    return tf.engine().runKernel(fusedKernelNames.routedSwiglu, { gate, up, w }, { experts, width }) as tf.Tensor2D;
  }
  const n = gate.shape[0];
  const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up); // [N, E·I]  silu(gate) ⊙ up
  return tf
    .mul(hidden.reshape([n, experts, width]), w.reshape([n, experts, 1])) // [N, E, I]
    .reshape([n, experts * width]) as tf.Tensor2D; // [N, E·I]
}

/** Next-token cross-entropy per row in nats, −log softmax(logits[n])[targets[n]]: logits [N, V] → [N]. */
export function crossEntropyRows(logits: tf.Tensor2D, targets: Int32Array): tf.Tensor1D {
  if (fusedOps()) {
    return tf.engine().runKernel(fusedKernelNames.softmaxXent, { logits }, { targets } as unknown as tf.NamedAttrMap) as tf.Tensor1D;
  }
  const logProbs = tf.logSoftmax(logits); // [N, V]
  const targetMask = oneHotRows(targets, logits.shape[1]); // [N, V]
  return tf.neg(tf.sum(tf.mul(logProbs, targetMask), 1)) as tf.Tensor1D; // [N]
}
