/**
 * The fused element-wise kernels (native/src/kernels/train_elementwise.h, src/model/fused_ops.ts: SwiGLU with the
 * routing weights, softmax cross-entropy, RMSNorm, attention's causal softmax): each fast path
 * against its double-precision twin, and each op's value and gradient with the addon's kernels (wasm and cpu
 * backends) against the tfjs composition the model used before (tf.grads through tfjs's cpu kernels).
 *
 * Tolerances: fast vs twin |x − ref| ≤ 1e-5·|ref| + 1e-6 (f32 against double, one rounding per operation and a
 * float exp); fused vs tfjs composition 1e-4·|ref| + 1e-5 (both f32; the composition rounds after each of its
 * kernels, and sums rows in another order).
 */
import * as tf from '@tensorflow/tfjs';
import { crossEntropy } from '../../../src/model/model';
import { groupedCausalMask } from '../../../src/model/attention';
import { causalSoftmax, fusedOps, rmsNorm, routedSwiglu } from '../../../src/model/fused_ops';
import { loadNative } from '../../../src/runtime/native';
import { selectBackend } from '../../../src/train/backend';
import { registerNativeKernels, restoreTfjsKernels } from '../../../src/train/native_kernels';
import { describeWithAddonFor, randomValues } from '../../helpers/native_kernels';

const describeWithAddon = describeWithAddonFor('fused ops tests');


function expectClose(actual: Float32Array, expected: Float32Array, rtol: number, atol: number, what: string): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= rtol * Math.abs(expected[i]) + atol)) {
      throw new Error(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

const N = 37, E = 3, I = 20, V = 301;

describeWithAddon('fused kernels against their twins', () => {
  const { kernels } = loadNative();
  const gate = randomValues(N * E * I, 1, 4), up = randomValues(N * E * I, 2), w = randomValues(N * E, 3).map(Math.abs);
  const dy = randomValues(N * E * I, 4);

  test('routedSwiglu and its backward', () => {
    const fast = kernels.routedSwiglu(gate, up, w, N, E, I, { threads: 2 });
    expectClose(fast, kernels.routedSwiglu(gate, up, w, N, E, I, { impl: 'ref' }), 1e-5, 1e-6, 'forward');
    const g = kernels.routedSwigluBackward(gate, up, w, dy, N, E, I, { threads: 2 });
    const r = kernels.routedSwigluBackward(gate, up, w, dy, N, E, I, { impl: 'ref' });
    expectClose(g.dgate, r.dgate, 1e-5, 1e-6, 'dgate');
    expectClose(g.dup, r.dup, 1e-5, 1e-6, 'dup');
    expectClose(g.dw, r.dw, 1e-5, 1e-6, 'dw');
  });

  test('softmaxXent and its backward, logits up to ±30', () => {
    const logits = randomValues(N * V, 5, 30);
    const targets = Int32Array.from({ length: N }, (_, n) => (n * 97) % V);
    const dloss = randomValues(N, 6);
    expectClose(kernels.softmaxXent(logits, targets, N, V, { threads: 2 }), kernels.softmaxXent(logits, targets, N, V, { impl: 'ref' }), 1e-5, 1e-6, 'loss');
    expectClose(
      kernels.softmaxXentBackward(logits, targets, dloss, N, V, { threads: 2 }),
      kernels.softmaxXentBackward(logits, targets, dloss, N, V, { impl: 'ref' }),
      1e-5,
      1e-6,
      'dlogits',
    );
  });

  test('rmsnormBackward against its twin (dw summed over 70 rows, across the 32-row blocks)', () => {
    const T = 70, d = 48;
    const x = randomValues(T * d, 7, 3), wn = randomValues(d, 8), g = randomValues(T * d, 9);
    const fast = kernels.rmsnormBackward(x, wn, g, T, d, 1e-6, { threads: 2 });
    const ref = kernels.rmsnormBackward(x, wn, g, T, d, 1e-6, { impl: 'ref' });
    expectClose(fast.dx, ref.dx, 1e-5, 1e-6, 'dx');
    expectClose(fast.dw, ref.dw, 1e-5, 1e-5, 'dw');
    expectClose(kernels.rmsnormTrain(x, wn, T, d, 1e-6, { threads: 2 }), kernels.rmsnormTrain(x, wn, T, d, 1e-6, { impl: 'ref' }), 1e-5, 1e-6, 'forward');
  });

  test('causalSoftmax and its backward: masked from each row\'s position on, and unmasked (period 0)', () => {
    const R = 3 * 2 * 17, C = 17; // 3 entries × a group of 2 heads × 17 positions
    const x = randomValues(R * C, 21, 20), g = randomValues(R * C, 22);
    for (const period of [C, 0]) {
      const fast = kernels.causalSoftmax(x, R, C, 0.25, period, { threads: 2 });
      const ref = kernels.causalSoftmax(x, R, C, 0.25, period, { impl: 'ref' });
      expectClose(fast, ref, 1e-5, 1e-6, `forward, period ${period}`);
      for (let r = 0; r < R; r++) {
        let sum = 0;
        for (let j = 0; j < C; j++) {
          sum += fast[r * C + j];
          if (period && j > r % period) expect(fast[r * C + j]).toBe(0); // masked: exactly 0
        }
        expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
      }
      expectClose(
        kernels.causalSoftmaxBackward(fast, g, R, C, 0.25, { threads: 2 }),
        kernels.causalSoftmaxBackward(fast, g, R, C, 0.25, { impl: 'ref' }),
        1e-5,
        1e-6,
        `backward, period ${period}`,
      );
    }
    expect(() => kernels.causalSoftmax(x, R, C, 0.25, -1)).toThrow('period must be a non-negative integer (0: no mask)');
    expect(() => kernels.causalSoftmax(x, R, C, Infinity, 0)).toThrow('scale must be finite');
  });

  test('bad input is refused with one line naming it', () => {
    expect(() => kernels.rmsnormBackward(gate, new Float32Array(E * I), dy, N, E * I, 0)).toThrow('eps must be a positive finite number');
    const logits = new Float32Array(2 * 3);
    expect(() => kernels.softmaxXent(logits, Int32Array.from([0, 3]), 2, 3)).toThrow('targets[1] = 3 is outside [0, V)');
    expect(() => kernels.softmaxXent(logits, Int32Array.from([0, -1]), 2, 3)).toThrow('targets[1] = -1 is outside [0, V)');
    expect(() => kernels.softmaxXent(logits, Int32Array.from([0]), 2, 3)).toThrow('targets must be an Int32Array of N ids');
    expect(() => kernels.routedSwiglu(gate, up, w, N, E, I + 1)).toThrow(`gate must have ${N * E * (I + 1)} elements`);
    expect(() => kernels.routedSwiglu(gate, up, w, N, E, I, { out: new Float32Array(3) })).toThrow(`out must be a Float32Array of ${N * E * I} elements`);
  });
});

/** Value and gradients of `f` on `backend` with native or tfjs kernels. */
async function valueAndGrads(backend: string, kernels: 'native' | 'tfjs', f: (xs: tf.Tensor[]) => tf.Scalar, inputs: { values: Float32Array; shape: number[] }[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  restoreTfjsKernels();
  if (kernels === 'native') registerNativeKernels(backend);
  expect(fusedOps()).toBe(kernels === 'native'); // the fused kernels run exactly when registered
  try {
    return tf.tidy(() => {
      const xs = inputs.map((x) => tf.tensor(x.values, x.shape));
      const { value, grads } = tf.valueAndGrads((...args: tf.Tensor[]) => f(args))(xs);
      return [value, ...grads].map((t) => Float32Array.from(t.dataSync() as Float32Array));
    });
  } finally {
    restoreTfjsKernels();
  }
}

describeWithAddon('fused ops against the tfjs composition: values and gradients', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });
  afterAll(async () => {
    restoreTfjsKernels();
    await tf.setBackend('cpu');
  });

  async function compare(what: string, f: (xs: tf.Tensor[]) => tf.Scalar, inputs: { values: Float32Array; shape: number[] }[]): Promise<void> {
    const reference = await valueAndGrads('cpu', 'tfjs', f, inputs);
    for (const backend of ['wasm', 'cpu']) {
      const fused = await valueAndGrads(backend, 'native', f, inputs);
      fused.forEach((values, i) => expectClose(values, reference[i], 1e-4, 1e-5, `${what} on ${backend}, ${i === 0 ? 'value' : `gradient ${i - 1}`}`));
    }
  }

  test('routedSwiglu: Σ R ⊙ routedSwiglu(gate, up, w), gradients for gate, up and w', async () => {
    const R = tf.tensor(randomValues(N * E * I, 9), [N, E * I]);
    await compare(
      'routedSwiglu',
      ([gate, up, w]) => tf.sum(tf.mul(routedSwiglu(gate as tf.Tensor2D, up as tf.Tensor2D, w as tf.Tensor2D, E, I), R)),
      [
        { values: randomValues(N * E * I, 1, 4), shape: [N, E * I] },
        { values: randomValues(N * E * I, 2), shape: [N, E * I] },
        { values: randomValues(N * E, 3), shape: [N, E] },
      ],
    );
    R.dispose();
  });

  test('rmsNorm: Σ R ⊙ rmsNorm(x, weight), gradients for x and weight', async () => {
    const d = 24;
    const R = tf.tensor(randomValues(N * d, 19), [N, d]);
    await compare('rmsNorm', ([x, weight]) => tf.sum(tf.mul(rmsNorm(x as tf.Tensor2D, weight as tf.Tensor1D, 1e-6), R)), [
      { values: randomValues(N * d, 11, 2), shape: [N, d] },
      { values: randomValues(d, 12), shape: [d] },
    ]);
    R.dispose();
  });

  test('crossEntropy (mean over rows), gradient for the logits', async () => {
    const targets = Int32Array.from({ length: N }, (_, n) => (n * 31) % V);
    await compare('crossEntropy', ([logits]) => crossEntropy(logits as tf.Tensor2D, targets), [{ values: randomValues(N * V, 5, 8), shape: [N, V] }]);
  });

  test('causalSoftmax: Σ R ⊙ softmax(scale·scores + groupedCausalMask), gradient for the scores', async () => {
    const T = 9, group = 2, entries = 3;
    const R = tf.tensor(randomValues(entries * group * T * T, 23), [entries, group * T, T]);
    const mask = groupedCausalMask(group, T);
    await compare('causalSoftmax', ([scores]) => tf.sum(tf.mul(causalSoftmax(scores as tf.Tensor3D, 0.3, T, mask), R)), [
      { values: randomValues(entries * group * T * T, 24, 10), shape: [entries, group * T, T] },
    ]);
    tf.dispose([R, mask]);
  });
});
