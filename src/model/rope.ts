import * as tf from '@tensorflow/tfjs';
import { plainMatMul } from './matmul';

/**
 * Rotary position embeddings in transformers' `rotate_half` form (docs/design.md §1):
 * for i < half, out[i] = x[i]·cos − x[i+half]·sin and out[i+half] = x[i+half]·cos + x[i]·sin,
 * with angle = position · rope_theta^(−2i/hd); i.e. out = x ⊙ cos + rotate_half(x) ⊙ sin.
 */
export interface RopeTables {
  cos: tf.Tensor2D; // [T, hd]  cos of the angle, the half-table repeated twice
  sin: tf.Tensor2D; // [T, hd]  sin of the angle, the half-table repeated twice
  rotation: tf.Tensor2D; // [hd, hd]  x · rotation = rotate_half(x) = [−x[half:], x[:half]]
}

/** Tables for positions 0..seqLen−1; the caller owns (and disposes) them. */
export function ropeTables(seqLen: number, headDim: number, theta: number): RopeTables {
  const half = headDim / 2;
  const cos = new Float32Array(seqLen * headDim);
  const sin = new Float32Array(seqLen * headDim);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      // Angles in double precision, like transformers' tables up to float32 rounding.
      const angle = t * Math.pow(theta, (-2 * i) / headDim);
      cos[t * headDim + i] = cos[t * headDim + i + half] = Math.cos(angle);
      sin[t * headDim + i] = sin[t * headDim + i + half] = Math.sin(angle);
    }
  }
  const rotation = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    rotation[(j + half) * headDim + j] = -1; // out[j] = −x[j + half]
    rotation[j * headDim + j + half] = 1; // out[j + half] = x[j]
  }
  return {
    cos: tf.tensor2d(cos, [seqLen, headDim]),
    sin: tf.tensor2d(sin, [seqLen, headDim]),
    rotation: tf.tensor2d(rotation, [headDim, headDim]),
  };
}

/**
 * Applies RoPE to x [B, T, heads, hd]. rotate_half is a product with a fixed signed permutation rather than two
 * slices and a concat: on wasm every slice copies its whole input, and this product is tiny (hd² per row).
 */
export function applyRope(x: tf.Tensor4D, tables: RopeTables): tf.Tensor4D {
  const [b, t, heads, hd] = x.shape;
  const cos = tables.cos.reshape([1, t, 1, hd]); // [1, T, 1, hd]
  const sin = tables.sin.reshape([1, t, 1, hd]); // [1, T, 1, hd]
  const rotated = plainMatMul(x.reshape([b * t * heads, hd]), tables.rotation).reshape([b, t, heads, hd]); // [B, T, heads, hd]
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D; // [B, T, heads, hd]
}
