import * as tf from '@tensorflow/tfjs';

/**
 * Backends whose BatchMatMul takes transpose flags at full speed (the addon's kernels registered into tfjs:
 * src/train/native_kernels). On those, products and their gradients pass `transposeA` / `transposeB` instead of
 * transposing explicitly; elsewhere (tfjs-wasm's own kernels) the explicit transposes below stay.
 */
const transposeFlagBackends = new Set<string>();

/** Marks `backendName`'s matrix products as fast with transpose flags (or not); the native kernels' registry calls it. */
export function setTransposeFlagProducts(backendName: string, fast: boolean): void {
  if (fast) transposeFlagBackends.add(backendName);
  else transposeFlagBackends.delete(backendName);
}

/** Whether products on the active backend use transpose flags rather than explicit transposes. */
export function transposeFlagProducts(): boolean {
  return transposeFlagBackends.size > 0 && transposeFlagBackends.has(tf.getBackend());
}

/**
 * `a · b` for 2-D tensors with explicit-transpose gradients (products only on tfjs-wasm's fast path).
 *
 * Why: on the wasm backend only an untransposed 2-D matMul is fast (≈ 21–26 GFLOP/s measured on 2 cores);
 * tfjs's own matMul gradient uses `transposeA` / `transposeB` flags, which run at ≈ 0.6–2 GFLOP/s there.
 * Transposing explicitly costs one memory pass and keeps every product on the fast path.
 */
const explicitTransposeMatMul = tf.customGrad(
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

/**
 * `a · b` for 2-D tensors, the model's products. Where transpose flags are fast (`transposeFlagProducts()`), plain
 * `tf.matMul`: tfjs's own gradient passes flags (no copies) and computes only the gradients that are needed (not
 * the one-hot's or RoPE's constant rotation's, which a custom gradient computes eagerly). Elsewhere the
 * explicit-transpose gradient above.
 */
export function plainMatMul(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return transposeFlagProducts() ? tf.matMul(a, b) : explicitTransposeMatMul(a, b);
}

/**
 * `a · bᵀ` (a [M, K], b [N, K]): with transpose flags where they are fast, else an explicit transpose of b and
 * `plainMatMul` (the tied output head, `final · embedᵀ`).
 */
export function matMulTransposedB(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (transposeFlagProducts()) return tf.matMul(a, b, false, true); // gradient: tfjs's, with flags
  return plainMatMul(a, tf.transpose(b) as tf.Tensor2D);
}
