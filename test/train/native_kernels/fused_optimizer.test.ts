/**
 * The optimizer step on the addon (native/src/kernels/adamw.h, src/train/native_kernels/fused_optimizer.ts): the
 * AdamW kernel against its double-precision twin, and AdamW.apply / clipScale with the native kernels registered
 * against the same calls on tfjs's kernels (wasm), over several steps with weight decay and a clip factor.
 *
 * Tolerances, per element |x − expected| ≤ 1e-6·|expected| + atol: for the first moment atol = 1e-6·max|g| (its
 * two terms can cancel, so the error is relative to the gradient, not to m); for the second moment 1e-14 (no
 * cancellation); for parameters atol = 1e-5·lr (the step's update, of order 1 in Adam, to 1e-5). These hold for
 * f32 in tfjs's order against double (the twin), and native against tfjs's kernels (same clip factor given to
 * both). The global norm against a double sum: native 1e-6, tfjs's f32 sums of 150 000 squares 1e-4.
 */
import * as tf from '@tensorflow/tfjs';
import { loadNative } from '../../../src/runtime/native';
import { selectBackend } from '../../../src/train/backend';
import { AdamW, clipScale } from '../../../src/train/adamw';
import { registerNativeKernels, restoreTfjsKernels } from '../../../src/train/native_kernels';
import { describeWithAddonFor, randomValues } from '../../helpers/native_kernels';

const describeWithAddon = describeWithAddonFor('fused optimizer tests');


function expectClose(actual: Float32Array, expected: Float32Array, atol: number, what: string): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= 1e-6 * Math.abs(expected[i]) + atol)) {
      throw new Error(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

const hyper = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8 };

describeWithAddon('AdamW kernel', () => {
  const { kernels } = loadNative();

  test('fast path against the double-precision twin: 5 steps, decay and a clip factor, 100 003 elements', () => {
    const n = 100_003; // not a multiple of the 16K-element chunk
    const fast = { p: randomValues(n, 1), m: new Float32Array(n), v: new Float32Array(n) };
    const ref = { p: fast.p.slice(), m: new Float32Array(n), v: new Float32Array(n) };
    for (let step = 1; step <= 5; step++) {
      const grad = randomValues(n, 10 + step, 0.1);
      const opts = { ...hyper, weightDecay: 0.1, step, gradScale: 0.7 };
      kernels.adamw(fast.p, grad, fast.m, fast.v, { ...opts, threads: 2 });
      kernels.adamw(ref.p, grad, ref.m, ref.v, { ...opts, impl: 'ref' });
      expectClose(fast.m, ref.m, 1e-6 * 0.1 * 0.7, `m after step ${step}`);
      expectClose(fast.v, ref.v, 1e-14, `v after step ${step}`);
      expectClose(fast.p, ref.p, 1e-5 * hyper.lr, `param after step ${step}`);
    }
  });

  test('sumSquares against its twin and a plain sum', () => {
    const x = randomValues(70_001, 3);
    let plain = 0;
    for (const value of x) plain += value * value;
    expect(Math.abs(kernels.sumSquares(x, { threads: 2 }) - plain) / plain).toBeLessThan(1e-6);
    expect(Math.abs(kernels.sumSquares(x, { impl: 'ref' }) - plain) / plain).toBeLessThan(1e-12);
  });

  test('bad input is refused with one line naming it', () => {
    const a = new Float32Array(4), b = new Float32Array(5);
    expect(() => kernels.adamw(a, b, new Float32Array(4), new Float32Array(4), { ...hyper, step: 1 })).toThrow('param, grad, m and v must have the same length');
    expect(() => kernels.adamw(a, new Float32Array(4), a, new Float32Array(4), { ...hyper, step: 1 })).toThrow('param, m and v must not overlap');
    expect(() => kernels.adamw(a, new Float32Array(4), new Float32Array(4), new Float32Array(4), { ...hyper, step: 0 })).toThrow('step must be an integer ≥ 1');
    const { lr: _lr, ...noLr } = hyper;
    expect(() => kernels.adamw(a, new Float32Array(4), new Float32Array(4), new Float32Array(4), { ...noLr, step: 1 } as never)).toThrow('lr is required');
  });
});

describeWithAddon('AdamW.apply and clipScale with native kernels against tfjs kernels (wasm)', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });
  afterAll(() => restoreTfjsKernels());

  /** 4 steps of AdamW on two parameters (one decayed) with clipped gradients; returns params, moments, norms. */
  function run(kernels: 'native' | 'tfjs'): { values: Float32Array[]; norms: number[] } {
    restoreTfjsKernels();
    if (kernels === 'native') registerNativeKernels('wasm');
    const params = new Map<string, tf.Variable>([
      ['w', tf.variable(tf.tensor(randomValues(3 * 50_000, 5), [3, 50_000]), true, `w_${kernels}`)],
      ['b', tf.variable(tf.tensor(randomValues(17, 6), [17]), true, `b_${kernels}`)],
    ]);
    const optimizer = new AdamW(params, new Set(['w']), { ...hyper, weightDecay: 0.1 });
    const norms: number[] = [];
    for (let step = 1; step <= 4; step++) {
      const grads = new Map([...params].map(([name, p], i) => [name, tf.tensor(randomValues(p.size, 100 * step + i, 0.05 * step), p.shape)]));
      const { norm, scale } = clipScale(grads, 1.0);
      norms.push(norm);
      expect(scale).toBe(norm > 1 ? 1 / (norm + 1e-6) : 1);
      // A fixed clip factor, so that AdamW is compared alone (the norms are compared below).
      optimizer.apply(params, grads, hyper.lr, step >= 3 ? 0.5 : 1);
      tf.dispose([...grads.values()]);
    }
    const values = [...params.values(), ...optimizer.expAvg.values(), ...optimizer.expAvgSq.values()].map((t) => Float32Array.from(t.dataSync() as Float32Array));
    optimizer.dispose();
    for (const p of params.values()) p.dispose();
    restoreTfjsKernels();
    return { values, norms };
  }

  test('params and moments after 4 clipped steps agree; the norms agree', () => {
    const tfjs = run('tfjs');
    const native = run('native');
    const names = ['w', 'b', 'm(w)', 'm(b)', 'v(w)', 'v(b)'];
    const atol = [1e-5 * hyper.lr, 1e-5 * hyper.lr, 1e-6 * 0.2, 1e-6 * 0.2, 1e-14, 1e-14]; // max|g| = 0.05·4
    native.values.forEach((values, i) => expectClose(values, tfjs.values[i], atol[i], names[i]));
    // The norm against a double sum in JavaScript: native (f32 lanes over 2K squares, double across chunks) to 1e-6; tfjs's f32 sums to 1e-4.
    const exact = [1, 2, 3, 4].map((step) => {
      let sum = 0;
      for (const [i, n] of [3 * 50_000, 17].entries()) for (const g of randomValues(n, 100 * step + i, 0.05 * step)) sum += g * g;
      return Math.sqrt(sum);
    });
    native.norms.forEach((norm, i) => expect(Math.abs(norm - exact[i]) / exact[i]).toBeLessThan(1e-6));
    tfjs.norms.forEach((norm, i) => expect(Math.abs(norm - exact[i]) / exact[i]).toBeLessThan(1e-4));
    expect(Math.max(...native.norms)).toBeGreaterThan(1); // the clip would act
    expect(native.values[0]).not.toEqual(randomValues(3 * 50_000, 5)); // the update happened in place
  });
});
