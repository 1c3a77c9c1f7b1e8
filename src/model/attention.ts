import * as tf from '@tensorflow/tfjs';
import { plainMatMul } from './matmul';
import { applyRope, RopeTables } from './rope';
import { causalSoftmax } from './fused_ops';

/** Shape of one attention block: H query heads sharing KV key/value heads, each of width hd. */
export interface AttentionShape {
  batch: number; // B
  seqLen: number; // T
  heads: number; // H
  kvHeads: number; // KV
  headDim: number; // hd
}

/**
 * Additive causal mask for the grouped layout used below: row r = g·T + t (g = query head within its KV group,
 * t = query position), column = key position; −1e9 where the key lies in the future.
 */
export function groupedCausalMask(groupSize: number, seqLen: number): tf.Tensor2D {
  const mask = new Float32Array(groupSize * seqLen * seqLen);
  for (let r = 0; r < groupSize * seqLen; r++) {
    const t = r % seqLen;
    for (let j = t + 1; j < seqLen; j++) mask[r * seqLen + j] = -1e9;
  }
  return tf.tensor2d(mask, [groupSize * seqLen, seqLen]);
}

/**
 * Causal grouped-query attention with a fused QKV projection (docs/design.md §1).
 *
 * Query head h reads KV head floor(h / (H/KV)). Instead of repeating K and V, the H/KV query heads of a group are
 * stacked along the row axis, so each KV head is used by one batched product: scores [B·KV, (H/KV)·T, T].
 * The two batched products use tfjs's batched matMul: measured on wasm it beat both a loop of per-sequence 2-D
 * products (unstack, or gather per entry) and explicit-transpose gradients, because per-op overhead dominates at
 * these sizes.
 *
 * With `expertProbs` (MoA, docs/design.md §12) the H heads are A attention experts of N_h = H/A consecutive heads,
 * and the output is Σ_a p_a · o_a·Wo_a^T. Since Wo_a is expert a's block of rows of `outWeight`, that equals scaling
 * each expert's head outputs by its p_a before one product with the whole `outWeight`: every expert computed, no loop.
 */
export function causalSelfAttention(
  x: tf.Tensor2D, // [N, d], N = B·T, rows ordered (batch, position)
  qkvWeight: tf.Tensor2D, // [d, (H + 2·KV)·hd]  columns: q heads, then k heads, then v heads
  qkvBias: tf.Tensor1D, // [(H + 2·KV)·hd]
  outWeight: tf.Tensor2D, // [H·hd, d]
  shape: AttentionShape,
  rope: RopeTables, // tables for T positions
  mask: tf.Tensor2D, // [(H/KV)·T, T] from groupedCausalMask
  expertProbs?: tf.Tensor2D, // [N, A] attention-router probabilities (MoA layers only)
): tf.Tensor2D {
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: hd } = shape;
  const group = H / KV;
  const qkv = tf.add(plainMatMul(x, qkvWeight), qkvBias) as tf.Tensor2D; // [N, (H+2KV)·hd]
  const q = tf.slice(qkv, [0, 0], [B * T, H * hd]).reshape([B, T, H, hd]) as tf.Tensor4D; // [B, T, H, hd]
  const k = tf.slice(qkv, [0, H * hd], [B * T, KV * hd]).reshape([B, T, KV, hd]) as tf.Tensor4D; // [B, T, KV, hd]
  const v = tf.slice(qkv, [0, (H + KV) * hd], [B * T, KV * hd]).reshape([B, T, KV, hd]); // [B, T, KV, hd]

  const qRot = applyRope(q, rope); // [B, T, H, hd]
  const kRot = applyRope(k, rope); // [B, T, KV, hd]

  const qGrouped = qRot
    .reshape([B, T, KV, group, hd])
    .transpose([0, 2, 3, 1, 4]) // [B, KV, group, T, hd]
    .reshape([B * KV, group * T, hd]) as tf.Tensor3D; // [B·KV, group·T, hd]
  const kTransposed = kRot.transpose([0, 2, 3, 1]).reshape([B * KV, hd, T]) as tf.Tensor3D; // [B·KV, hd, T]
  const vGrouped = v.transpose([0, 2, 1, 3]).reshape([B * KV, T, hd]) as tf.Tensor3D; // [B·KV, T, hd]

  const weights = causalSoftmax(tf.matMul(qGrouped, kTransposed), 1 / Math.sqrt(hd), T, mask); // [B·KV, group·T, T]
  const heads = tf.matMul(weights, vGrouped) // [B·KV, group·T, hd]
    .reshape([B, KV, group, T, hd])
    .transpose([0, 3, 1, 2, 4]) // [B, T, KV, group, hd]  head index = kv·group + g
    .reshape([B * T, H * hd]) as tf.Tensor2D; // [N, H·hd]
  if (!expertProbs) return plainMatMul(heads, outWeight); // [N, d]
  const A = expertProbs.shape[1];
  const weighted = tf
    .mul(heads.reshape([B * T, A, (H / A) * hd]), expertProbs.reshape([B * T, A, 1])) // [N, A, N_h·hd]
    .reshape([B * T, H * hd]) as tf.Tensor2D; // [N, H·hd]
  return plainMatMul(weighted, outWeight); // [N, d]
}
