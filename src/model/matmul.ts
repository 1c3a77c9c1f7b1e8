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
