/**
 * With the native kernels registered, the model's products pass transpose flags to the native BatchMatMul instead
 * of transposing explicitly (src/model/matmul.ts); with tfjs's kernels the explicit transposes stay. Both must give
 * what tfjs computes: the reference is always tfjs's own kernels (explicit-transpose gradients on wasm).
 *
 * - plainMatMul / matMulTransposedB: value and both gradients against tf.matMul's on tfjs's cpu kernels,
 *   |native − reference| ≤ 1e-4 + 1e-4·|reference| elementwise (as registry.test.ts), and no Transpose kernel runs.
 * - A small model (d 32, 2 layers, 4 heads / 2 KV heads, 4 experts × 16, tied embeddings, T 16, B 4): the loss and
 *   the gradient of every parameter, native kernels with flags against tfjs's wasm kernels with explicit transposes.
 *   Per parameter: max|g_native − g_tfjs| ≤ 1e-4 · max|g_tfjs| + 1e-9 (f32 sums in another order; measured
 *   5.1e-7 here, 1.1e-6 on the full tiny recipe), loss within 1e-5 relative. The Transpose kernel then runs only for attention's layout changes
 *   (4 per layer forward, 4 backward), against those plus 2 per product gradient with tfjs's kernels.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { matMulTransposedB, plainMatMul, transposeFlagProducts } from '../../../src/model/matmul';
import { MoEModel } from '../../../src/model/model';
import { disposeParams, initParams } from '../../../src/model/params';
import { loadRecipe, Recipe } from '../../../src/recipe';
import { selectBackend } from '../../../src/train/backend';
import { KernelTimer, registerNativeKernels, restoreTfjsKernels } from '../../../src/train/native_kernels';
import { describeWithAddonFor, randomValues } from '../../helpers/native_kernels';

const describeWithAddon = describeWithAddonFor('transpose-flag tests');

function expectElementwiseClose(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= 1e-4 + 1e-4 * Math.abs(expected[i]))) {
      throw new Error(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** Calls of the Transpose kernel while `f` runs on the active backend. */
function transposeCalls(f: () => void): number {
  const timer = new KernelTimer(tf.getBackend());
  timer.install();
  try {
    f();
  } finally {
    timer.uninstall();
  }
  return timer.report().find((k) => k.kernel === 'Transpose')?.calls ?? 0;
}

/** recipes/tiny.yaml shrunk to train in seconds. */
function smallModelRecipe(): Recipe {
  const tiny = loadRecipe(path.resolve(__dirname, '..', '..', '..', 'recipes', 'tiny.yaml'));
  return {
    ...tiny,
    model: {
      ...tiny.model,
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_experts: 4,
      moe_intermediate_size: 16,
      max_position_embeddings: 16,
      tie_word_embeddings: true,
    },
    data: { ...tiny.data, seq_len: 16 },
    train: { ...tiny.train, batch_size: 4 },
  };
}

/** Loss, every parameter's gradient (by parameter name) and the Transpose calls of one forward + backward pass. */
function lossAndGradients(recipe: Recipe): { loss: number; grads: Map<string, Float32Array>; transposes: number } {
  const params = initParams(recipe.model, recipe.seed);
  const model = new MoEModel(recipe.model, params);
  const B = recipe.train.batch_size;
  const T = recipe.data.seq_len;
  const V = recipe.model.vocab_size;
  const inputs = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V);
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 10) % V);
  const names = new Map([...params].map(([name, v]) => [v.name, name]));
  const routing = { mode: recipe.routing.mode, miAlpha: recipe.routing.mi_alpha, topK: recipe.routing.top_k, balanceAlpha: recipe.routing.balance_alpha };
  try {
    let loss = 0;
    const grads = new Map<string, Float32Array>();
    const transposes = transposeCalls(() => {
      const { value, grads: byVar } = tf.variableGrads(() => model.loss(inputs, targets, B, T, routing).total, [...params.values()]);
      loss = value.dataSync()[0];
      for (const [varName, g] of Object.entries(byVar)) grads.set(names.get(varName) as string, Float32Array.from(g.dataSync() as Float32Array));
      tf.dispose([value, ...Object.values(byVar)]);
    });
    return { loss, grads, transposes };
  } finally {
    model.dispose();
    disposeParams(params);
  }
}

describeWithAddon('transpose flags in the model products with native kernels', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  afterEach(() => {
    restoreTfjsKernels();
  });

  test('flags follow the native BatchMatMul of the active backend', async () => {
    await tf.setBackend('wasm');
    restoreTfjsKernels();
    expect(transposeFlagProducts()).toBe(false);
    registerNativeKernels('wasm');
    expect(transposeFlagProducts()).toBe(true);
    await tf.setBackend('cpu'); // native kernels are registered for wasm only
    expect(transposeFlagProducts()).toBe(false);
    await tf.setBackend('wasm');
    restoreTfjsKernels();
    expect(transposeFlagProducts()).toBe(false);
  });

  test('plainMatMul and matMulTransposedB: value and gradients equal tf.matMul on tfjs kernels, without a Transpose', async () => {
    const [M, K, N] = [9, 13, 7];
    const a = randomValues(M * K, 1);
    const b = randomValues(K * N, 2);
    const bT = randomValues(N * K, 3);
    const w = randomValues(M * N, 4); // a non-uniform upstream gradient
    const run = (ours: boolean): Float32Array[] =>
      tf.tidy(() => {
        const [x, y, yT, dy] = [tf.tensor2d(a, [M, K]), tf.tensor2d(b, [K, N]), tf.tensor2d(bT, [N, K]), tf.tensor2d(w, [M, N])];
        const product = (p: tf.Tensor, q: tf.Tensor) => (ours ? plainMatMul(p as tf.Tensor2D, q as tf.Tensor2D) : tf.matMul(p, q));
        const productT = (p: tf.Tensor, q: tf.Tensor) => (ours ? matMulTransposedB(p as tf.Tensor2D, q as tf.Tensor2D) : tf.matMul(p, q, false, true));
        const plain = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(product(p, q), dy)))([x, y]);
        const transposed = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(productT(p, q), dy)))([x, yT]);
        return [product(x, y), ...plain, productT(x, yT), ...transposed].map((t) => Float32Array.from(t.dataSync() as Float32Array));
      });
    await tf.setBackend('cpu');
    const reference = run(false);
    await tf.setBackend('wasm');
    registerNativeKernels('wasm');
    let native: Float32Array[] = [];
    expect(transposeCalls(() => (native = run(true)))).toBe(0);
    const labels = ['a·b', 'd/da a·b', 'd/db a·b', 'a·bᵀ', 'd/da a·bᵀ', 'd/db a·bᵀ'];
    native.forEach((values, i) => expectElementwiseClose(values, reference[i], labels[i]));
  });

  test('a small model: loss and every gradient with flags (native) equal those with explicit transposes (tfjs)', async () => {
    const recipe = smallModelRecipe();
    const layers = recipe.model.num_hidden_layers;
    await tf.setBackend('wasm');
    restoreTfjsKernels();
    const reference = lossAndGradients(recipe);
    registerNativeKernels('wasm');
    const native = lossAndGradients(recipe);
    expect(native.transposes).toBe(8 * layers); // attention's layout changes only
    expect(reference.transposes).toBeGreaterThan(native.transposes + 2 * 8 * layers); // + ≥ 8 product gradients a layer
    expect(Math.abs(native.loss - reference.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(reference.loss));
    expect([...native.grads.keys()].sort()).toEqual([...reference.grads.keys()].sort());
    for (const [name, expected] of reference.grads) {
      const actual = native.grads.get(name) as Float32Array;
      let scale = 0;
      let worst = 0;
      for (let i = 0; i < expected.length; i++) {
        scale = Math.max(scale, Math.abs(expected[i]));
        worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
      }
      if (!(worst <= 1e-4 * scale + 1e-9)) throw new Error(`gradient of ${name}: max difference ${worst} at scale ${scale}`);
      expect(scale).toBeGreaterThan(0); // a gradient that flows
    }
  });
});
