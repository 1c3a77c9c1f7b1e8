import * as tf from '@tensorflow/tfjs';

/** `x / sqrt(mean(x²) + eps) ⊙ weight` over the last axis (docs/design.md §1). */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  const meanSquare = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight) as tf.Tensor2D; // [N, d]
}
