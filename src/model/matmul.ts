import * as tf from '@tensorflow/tfjs';

/**
 * `a · b` for 2-D tensors whose gradient also uses only plain 2-D products.
 *
 * Why: on the wasm backend only an untransposed 2-D matMul is fast (≈ 21–26 GFLOP/s measured on 2 cores);
 * tfjs's own matMul gradient uses `transposeA` / `transposeB` flags, which run at ≈ 0.6–2 GFLOP/s there.
 * Transposing explicitly costs one memory pass and keeps every product on the fast path.
 */
export const plainMatMul = tf.customGrad(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ((a: tf.Tensor2D, b: tf.Tensor2D, save: any) => {
    save([a, b]);
    return {
      value: tf.matMul(a, b), // [M, N]
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [savedA, savedB] = saved as [tf.Tensor2D, tf.Tensor2D];
        const gradA = tf.matMul(dy, tf.transpose(savedB)); // [M, N]·[N, K] = [M, K]
        const gradB = tf.matMul(tf.transpose(savedA), dy); // [K, M]·[M, N] = [K, N]
        return [gradA, gradB];
      },
    };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
  }) as any,
) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** Entry g of a [G, M, K] tensor as [M, K]. Gather reads only that entry; on wasm a slice copies the whole input. */
function entry(x: tf.Tensor3D, g: number): tf.Tensor2D {
  return tf.gather(x, tf.tensor1d([g], 'int32')).reshape([x.shape[1], x.shape[2]]) as tf.Tensor2D; // [M, K]
}

/**
 * Batched `a · b` as one plain 2-D product per batch entry, forward and backward. On wasm a batched matMul runs at
 * ≈ 2 GFLOP/s while plain 2-D products run ≈ 10× faster even at these small sizes, which outweighs the per-op
 * overhead of the loop. The gradient is written out (gather has no gradient on wasm, and none is needed here).
 */
export const plainBatchMatMul = tf.customGrad(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ((a: tf.Tensor3D, b: tf.Tensor3D, save: any) => {
    save([a, b]);
    const groups = a.shape[0];
    const products = Array.from({ length: groups }, (_, g) => tf.matMul(entry(a, g), entry(b, g))); // G × [M, N]
    return {
      value: tf.stack(products), // [G, M, N]
      gradFunc: (dy: tf.Tensor3D, saved: tf.Tensor[]) => {
        const [savedA, savedB] = saved as [tf.Tensor3D, tf.Tensor3D];
        const gradA: tf.Tensor2D[] = [];
        const gradB: tf.Tensor2D[] = [];
        for (let g = 0; g < groups; g++) {
          const dyG = entry(dy, g); // [M, N]
          gradA.push(tf.matMul(dyG, tf.transpose(entry(savedB, g)))); // [M, N]·[N, K] = [M, K]
          gradB.push(tf.matMul(tf.transpose(entry(savedA, g)), dyG)); // [K, M]·[M, N] = [K, N]
        }
        return [tf.stack(gradA), tf.stack(gradB)]; // [G, M, K], [G, K, N]
      },
    };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
  }) as any,
) as (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;
