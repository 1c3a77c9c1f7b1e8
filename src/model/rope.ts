import * as tf from '@tensorflow/tfjs';

/**
 * Rotary position embeddings in transformers' `rotate_half` form (docs/design.md §1):
 * for i < half, out[i] = x[i]·cos − x[i+half]·sin and out[i+half] = x[i+half]·cos + x[i]·sin,
 * with angle = position · rope_theta^(−2i/hd).
 */
export interface RopeTables {
  cos: tf.Tensor2D; // [T, hd]  cos of the angle, the half-table repeated twice
  sin: tf.Tensor2D; // [T, hd]  sin of the angle, with the first half negated (folds rotate_half's sign in)
}

/** Tables for positions 0..seqLen−1; the caller owns (and disposes) them. */
export function ropeTables(seqLen: number, headDim: number, theta: number): RopeTables {
  const half = headDim / 2;
  const cos = new Float32Array(seqLen * headDim);
  const sin = new Float32Array(seqLen * headDim);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      // Computed in double precision, like transformers' float32 tables up to rounding.
      const angle = t * Math.pow(theta, (-2 * i) / headDim);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * headDim + i] = c;
      cos[t * headDim + i + half] = c;
      sin[t * headDim + i] = -s;
      sin[t * headDim + i + half] = s;
    }
  }
  return { cos: tf.tensor2d(cos, [seqLen, headDim]), sin: tf.tensor2d(sin, [seqLen, headDim]) };
}

/** Applies RoPE to x [B, T, heads, hd]. */
export function applyRope(x: tf.Tensor4D, tables: RopeTables): tf.Tensor4D {
  const [b, t, heads, hd] = x.shape;
  const half = hd / 2;
  const cos = tables.cos.reshape([1, t, 1, hd]); // [1, T, 1, hd]
  const sin = tables.sin.reshape([1, t, 1, hd]); // [1, T, 1, hd]
  const first = tf.slice(x, [0, 0, 0, 0], [b, t, heads, half]); // [B, T, heads, half]
  const second = tf.slice(x, [0, 0, 0, half], [b, t, heads, half]); // [B, T, heads, half]
  const swapped = tf.concat([second, first], 3); // [B, T, heads, hd]  (sign lives in the sin table)
  return tf.add(tf.mul(x, cos), tf.mul(swapped, sin)) as tf.Tensor4D; // [B, T, heads, hd]
}
