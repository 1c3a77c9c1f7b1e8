import * as tf from '@tensorflow/tfjs';
import { routedSwiglu } from './fused_ops';
import { plainMatMul } from './matmul';

/**
 * The MoE MLP with every expert computed at once.
 *
 * Experts sit side by side in 2-D weights: gate and up [d, E·I] (columns e·I..(e+1)·I−1 belong to expert e) and
 * down [E·I, d]. (Separate gate and up products rather than one fused [d, 2·E·I]: splitting a product's columns
 * copies the whole tensor on wasm, costing more than the second product's call.) Scaling each
 * expert's I hidden units by that expert's routing weight before the shared down projection equals
 * Σ_e w_e · down_e(silu(gate_e(x)) ⊙ up_e(x)), with two plain 2-D products instead of a loop or a batched product
 * (the only fast path on wasm).
 */
export function expertsMlp(
  x: tf.Tensor2D, // [N, d]
  gateWeight: tf.Tensor2D, // [d, E·I]
  upWeight: tf.Tensor2D, // [d, E·I]
  down: tf.Tensor2D, // [E·I, d]
  routeWeights: tf.Tensor2D, // [N, E]  p_e, or p_e masked to the selected experts
  numExperts: number,
  intermediate: number,
): tf.Tensor2D {
  const gate = plainMatMul(x, gateWeight); // [N, E·I]
  const up = plainMatMul(x, upWeight); // [N, E·I]
  const weighted = routedSwiglu(gate, up, routeWeights, numExperts, intermediate); // [N, E·I]  silu(gate) ⊙ up · w_e
  return plainMatMul(weighted, down); // [N, d]
}

/** A dense layer's SwiGLU MLP (first_k_dense_replace): down · (silu(gate·x) ⊙ up·x). */
export function denseMlp(
  x: tf.Tensor2D, // [N, d]
  gateWeight: tf.Tensor2D, // [d, W]
  upWeight: tf.Tensor2D, // [d, W]
  down: tf.Tensor2D, // [W, d]
): tf.Tensor2D {
  const gate = plainMatMul(x, gateWeight); // [N, W]
  const up = plainMatMul(x, upWeight); // [N, W]
  const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D; // [N, W]
  return plainMatMul(hidden, down); // [N, d]
}

/** The always-on shared expert, scaled by sigmoid(x · w_gate) as in Qwen2-MoE. */
export function sharedExpert(
  x: tf.Tensor2D, // [N, d]
  gateWeight: tf.Tensor2D, // [d, Is]
  upWeight: tf.Tensor2D, // [d, Is]
  down: tf.Tensor2D, // [Is, d]
  expertGate: tf.Tensor2D, // [d, 1]
): tf.Tensor2D {
  const gate = plainMatMul(x, gateWeight); // [N, Is]
  const up = plainMatMul(x, upWeight); // [N, Is]
  const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D; // [N, Is]
  const scale = tf.sigmoid(plainMatMul(x, expertGate)); // [N, 1]
  return tf.mul(plainMatMul(hidden, down), scale) as tf.Tensor2D; // [N, d]
}

/**
 * Routing weights for the SMoE baseline: p kept on the k most probable experts (ties: lower index) and zero
 * elsewhere, NOT renormalised — the same rule as DS-MoE's sparse inference and Qwen2-MoE's
 * `norm_topk_prob: false`, so a baseline checkpoint runs unchanged on the sparse runtime with top-k.
 * Returns the 0/1 selection mask as a constant (selection has no gradient).
 */
export function topKMask(probs: tf.Tensor2D, k: number): tf.Tensor2D {
  const [n, e] = probs.shape;
  const values = probs.dataSync();
  const mask = new Float32Array(n * e);
  const order = Array.from({ length: e }, (_, i) => i);
  for (let row = 0; row < n; row++) {
    const base = row * e;
    // Stable sort: equal probabilities keep index order, so ties go to the lower index.
    const ranked = order.slice().sort((a, b) => values[base + b] - values[base + a]);
    for (let j = 0; j < k; j++) mask[base + ranked[j]] = 1;
  }
  return tf.tensor2d(mask, [n, e]);
}
