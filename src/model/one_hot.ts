import * as tf from '@tensorflow/tfjs';

/**
 * Float one-hot rows built in JavaScript: tfjs 4.22's wasm OneHot kernel writes int32 bit patterns even when
 * asked for float32 (ones come out as 1.4e-45), and a cast would add a pass over [N, V].
 */
export function oneHotRows(ids: Int32Array, depth: number): tf.Tensor2D {
  const values = new Float32Array(ids.length * depth);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(id >= 0 && id < depth)) throw new Error(`token id ${id} is outside the vocabulary (0..${depth - 1})`);
    values[i * depth + id] = 1;
  }
  return tf.tensor2d(values, [ids.length, depth]);
}
