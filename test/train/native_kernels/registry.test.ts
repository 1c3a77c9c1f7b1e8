/**
 * The addon's training kernels inside tfjs (src/train/native_kernels) against tfjs's own kernels: every registered
 * kernel, every transpose combination, odd and broadcast shapes, forward and gradient (tf.grads through the op).
 * The reference is tfjs's cpu backend with its own kernels; the native kernels run on the wasm and cpu backends.
 * Tolerance: |native − reference| ≤ 1e-4 + 1e-4·|reference| elementwise (f32 sums of ≤ 13·5 terms of O(1) values,
 * summed in a different order).
 */
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../src/train/backend';
import { nativeKernelsInUse, registerNativeKernels, restoreTfjsKernels } from '../../../src/train/native_kernels';
import { describeWithAddonFor, randomValues } from '../../helpers/native_kernels';

const describeWithAddon = describeWithAddonFor('native-kernels tests');

const ATOL = 1e-4;
const RTOL = 1e-4;

function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < expected.length; i++) {
    if (!Number.isFinite(actual[i])) throw new Error(`${what}: non-finite value ${actual[i]} at ${i}`);
    const excess = Math.abs(actual[i] - expected[i]) - (ATOL + RTOL * Math.abs(expected[i]));
    if (excess > worst) {
      worst = excess;
      worstAt = i;
    }
  }
  if (worstAt >= 0) throw new Error(`${what}: element ${worstAt} is ${actual[worstAt]}, expected ${expected[worstAt]}`);
}

interface Input {
  shape: number[];
  values: Float32Array;
}

function input(shape: number[], seed: number): Input {
  return { shape, values: randomValues(shape.reduce((a, b) => a * b, 1), seed) };
}

/** Runs `f` on `backend` with native or tfjs kernels; returns every output's values. */
async function runOn(backend: string, kernels: 'native' | 'tfjs', f: (xs: tf.Tensor[]) => tf.Tensor[], inputs: Input[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  restoreTfjsKernels();
  if (kernels === 'native') registerNativeKernels(backend);
  try {
    return tf.tidy(() => {
      const xs = inputs.map((x) => tf.tensor(x.values, x.shape));
      return f(xs).map((y) => Float32Array.from(y.dataSync() as Float32Array));
    });
  } finally {
    restoreTfjsKernels();
  }
}

/** `f` with native kernels on wasm and cpu against `reference` (default `f`) with tfjs's kernels on cpu. */
async function compareWithReference(
  what: string,
  f: (xs: tf.Tensor[]) => tf.Tensor[],
  inputs: Input[],
  referenceF: (xs: tf.Tensor[]) => tf.Tensor[] = f,
): Promise<void> {
  const reference = await runOn('cpu', 'tfjs', referenceF, inputs);
  for (const backend of ['wasm', 'cpu']) {
    const native = await runOn(backend, 'native', f, inputs);
    native.forEach((values, i) => expectClose(values, reference[i], `${what} on ${backend}, output ${i}`));
  }
}

/** [batch…, rows, cols] with the last two swapped when transposed. */
function operand(batch: number[], rows: number, cols: number, transposed: boolean): number[] {
  return transposed ? [...batch, cols, rows] : [...batch, rows, cols];
}

// [batchA, batchB, M, K, N]: 1×1, odd sizes, batched, broadcast (size-1 and missing batch dimensions), GEMV-sized.
const shapeCases: [number[], number[], number, number, number][] = [
  [[], [], 1, 1, 1],
  [[], [], 7, 13, 5],
  [[], [], 1, 33, 17],
  [[], [], 65, 9, 3],
  [[3], [3], 7, 13, 5],
  [[2, 1], [3], 7, 13, 5],
  [[], [4], 7, 13, 5],
  [[2, 3], [1, 1], 4, 6, 9],
];
const transposes: [boolean, boolean][] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

describeWithAddon('native training kernels', () => {
  beforeAll(async () => {
    await selectBackend('wasm'); // registers the wasm backend with its binaries' path
    await tf.setBackend('cpu');
  });

  afterAll(() => {
    restoreTfjsKernels();
  });

  test('register and restore', async () => {
    await tf.setBackend('wasm');
    const { registered } = registerNativeKernels('wasm');
    expect(registered).toEqual(['BatchMatMul', '_FusedMatMul', 'Identity', 'Slice', 'Sum']);
    expect(registerNativeKernels('wasm').registered).toEqual(registered); // idempotent
    expect(nativeKernelsInUse()).toEqual(['wasm/BatchMatMul', 'wasm/_FusedMatMul', 'wasm/Identity', 'wasm/Slice', 'wasm/Sum']);
    const original = restoreTfjsKernels();
    expect(original.restored).toHaveLength(5);
    await tf.setBackend('cpu');
    expect(registerNativeKernels('cpu').registered).toEqual(['BatchMatMul', '_FusedMatMul', 'Sum']); // cpu's Identity shares already
    restoreTfjsKernels();
    expect(nativeKernelsInUse()).toEqual([]);
    expect(() => registerNativeKernels('webgl')).toThrow(/wasm and cpu/);
  });

  for (const [batchA, batchB, M, K, N] of shapeCases) {
    for (const [ta, tb] of transposes) {
      const label = `[${batchA}]·[${batchB}] M${M} K${K} N${N} transposeA=${ta} transposeB=${tb}`;
      const inputs = [input(operand(batchA, M, K, ta), 1 + M * K), input(operand(batchB, K, N, tb), 7 + K * N)];

      // tfjs 4.22's BatchMatMul gradient does not sum over broadcast batch dimensions (it fails its own shape
      // check whatever the kernel), so broadcast shapes are compared forward only.
      const broadcast = JSON.stringify(batchA) !== JSON.stringify(batchB);
      test(`BatchMatMul forward${broadcast ? '' : ' and gradient'} ${label}`, async () => {
        const outShape = tf.tidy(() => tf.matMul(tf.zeros(inputs[0].shape), tf.zeros(inputs[1].shape), ta, tb).shape);
        const weights = input(outShape, 99); // a non-uniform upstream gradient
        await compareWithReference(
          `matMul ${label}`,
          ([a, b, w]) => {
            const value = tf.matMul(a, b, ta, tb);
            if (broadcast) return [value];
            const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), w)))([a, b]);
            return [value, da, db];
          },
          [...inputs, weights],
          // tfjs's cpu kernel flattens batch dimensions before broadcasting ([2, 1] against [3] gives 3 entries):
          // the reference broadcasts explicitly first.
          broadcast
            ? ([a, b]) => {
                const batch = outShape.slice(0, -2);
                return [tf.matMul(tf.broadcastTo(a, [...batch, ...a.shape.slice(-2)]), tf.broadcastTo(b, [...batch, ...b.shape.slice(-2)]), ta, tb)];
              }
            : undefined,
        );
      });
    }
  }

  const activations = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'] as const;
  for (const [ta, tb] of transposes) {
    for (const activation of activations) {
      test(`_FusedMatMul ${activation} transposeA=${ta} transposeB=${tb}, bias over the last axis`, async () => {
        const [M, K, N] = [7, 13, 5];
        const inputs = [input(operand([], M, K, ta), 3), input(operand([], K, N, tb), 4), input([N], 5), input([M, N], 6)];
        await compareWithReference(
          `fused ${activation}`,
          ([a, b, bias, alpha]) => [
            tf.fused.matMul({
              a,
              b,
              transposeA: ta,
              transposeB: tb,
              bias,
              activation,
              preluActivationWeights: activation === 'prelu' ? alpha : undefined,
              leakyreluAlpha: 0.1,
            }),
          ],
          inputs,
        );
      });
    }
  }

  test('_FusedMatMul with batched inputs and a full-shape bias', async () => {
    const inputs = [input([3, 7, 13], 11), input([3, 13, 5], 12), input([3, 7, 5], 13)];
    await compareWithReference('fused batched', ([a, b, bias]) => [tf.fused.matMul({ a, b, bias, activation: 'relu' })], inputs);
  });

  test('_FusedMatMul with a broadcast batch dimension and a [1, N] bias', async () => {
    // tf.fused.matMul flattens batch dimensions before its kernel, so only a batch of 1 broadcasts; tfjs's cpu
    // _FusedMatMul rejects even that: the reference is matMul + add on explicitly broadcast operands.
    const inputs = [input([1, 7, 13], 21), input([3, 13, 5], 22), input([1, 5], 23)];
    await compareWithReference(
      'fused broadcast',
      ([a, b, bias]) => [tf.fused.matMul({ a, b, bias, activation: 'relu' })],
      inputs,
      ([a, b, bias]) => [tf.relu(tf.add(tf.matMul(tf.broadcastTo(a, [3, 7, 13]), b), bias))],
    );
  });

  for (const activation of ['linear', 'relu'] as const) {
    for (const [ta, tb] of transposes) {
      test(`_FusedMatMul gradient, ${activation}, transposeA=${ta} transposeB=${tb}`, async () => {
        const [M, K, N] = [9, 6, 11];
        const inputs = [input(operand([], M, K, ta), 31), input(operand([], K, N, tb), 32), input([N], 33), input([M, N], 34)];
        await compareWithReference(
          `fused gradient ${activation}`,
          ([a, b, bias, w]) =>
            tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
              tf.sum(tf.mul(tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, transposeA: ta, transposeB: tb, bias: z, activation }), w)),
            )([a, b, bias]),
          inputs,
        );
      });
    }
  }

  test('non-float32 products fall back to the backend kernel', async () => {
    for (const backend of ['wasm', 'cpu']) {
      await tf.setBackend(backend);
      registerNativeKernels(backend);
      try {
        // wasm's own kernel rejects int32 with its message: the native kernel passed the call on unchanged.
        const run = () => tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]], [1, 2], 'int32'), tf.tensor2d([[3], [4]], [2, 1], 'int32')).dataSync());
        if (backend === 'cpu') expect(Array.from(run())).toEqual([11]);
        else expect(run).toThrow(/non-float32|not yet supported/);
      } finally {
        restoreTfjsKernels();
      }
    }
  });

  test('Identity shares storage on wasm and outlives its source', async () => {
    await tf.setBackend('wasm');
    registerNativeKernels('wasm');
    try {
      const source = tf.tensor1d([1, 2, 3]);
      const copy = tf.clone(source); // the Identity kernel
      source.dispose();
      const reuse = tf.tensor1d([9, 9, 9]); // would land in freed storage if the clone had not kept it
      expect(Array.from(copy.dataSync())).toEqual([1, 2, 3]);
      reuse.dispose();
      const doubled = tf.tidy(() => tf.mul(copy, 2));
      copy.dispose();
      expect(Array.from(doubled.dataSync())).toEqual([2, 4, 6]);
      doubled.dispose();
      const x = tf.variable(tf.tensor1d([5, 6]));
      x.assign(tf.tensor1d([7, 8]));
      expect(Array.from(x.dataSync())).toEqual([7, 8]);
      x.dispose();
    } finally {
      restoreTfjsKernels();
    }
  });

  test('Slice reads its input in place on wasm: every rank 1-5, begin/size forms, and the fallback dtypes', async () => {
    await tf.setBackend('wasm');
    const cases: { shape: number[]; begin: number[]; size: number[] }[] = [
      { shape: [10], begin: [3], size: [5] },
      { shape: [6, 10], begin: [0, 4], size: [6, 3] }, // a column block, as q/k/v from the fused projection
      { shape: [6, 10], begin: [2, 0], size: [3, -1] }, // contiguous rows, size −1 to the end
      { shape: [4, 5, 6], begin: [1, 2, 3], size: [2, 3, 2] },
      { shape: [3, 4, 5, 6], begin: [1, 0, 2, 1], size: [2, 4, 2, 5] },
      { shape: [2, 3, 2, 3, 4], begin: [0, 1, 0, 1, 1], size: [2, 2, 2, 2, 3] },
    ];
    const run = () =>
      cases.map(({ shape, begin, size }) =>
        tf.tidy(() => {
          const x = tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i * 0.5 - 7), shape);
          const y = tf.slice(x, begin, size);
          return { shape: y.shape, values: Array.from(y.dataSync()) };
        }),
      );
    const want = run();
    registerNativeKernels('wasm');
    try {
      expect(run()).toEqual(want);
      // int32 goes to the backend's own kernel
      expect(Array.from(tf.tidy(() => tf.slice(tf.tensor2d([[1, 2, 3], [4, 5, 6]], [2, 3], 'int32'), [0, 1], [2, 1]).dataSync()))).toEqual([2, 5]);
      // the slice outlives a source freed right after it, and a later allocation does not disturb it
      const source = tf.tensor2d(Float32Array.from({ length: 64 * 64 }, (_, i) => i), [64, 64]);
      const part = tf.slice(source, [1, 2], [2, 3]);
      source.dispose();
      const other = tf.fill([256, 256], 3);
      expect(Array.from(part.dataSync())).toEqual([66, 67, 68, 130, 131, 132]);
      tf.dispose([part, other]);
    } finally {
      restoreTfjsKernels();
    }
  });

  test('Sum over leading axes (f64 column sums, in place) agrees with the backend; other reductions go to it', async () => {
    const cases: { shape: number[]; axis: number | number[] | null; keepDims: boolean }[] = [
      { shape: [37, 21], axis: 0, keepDims: false }, // a bias gradient
      { shape: [37, 21], axis: [0], keepDims: true },
      { shape: [4, 6, 5], axis: [1, 0], keepDims: false }, // two leading axes, given out of order
      { shape: [4, 6, 5], axis: -3, keepDims: true },
      { shape: [4, 6, 5], axis: [0, 2], keepDims: false }, // not leading: the backend's kernel
      { shape: [4, 6, 5], axis: 2, keepDims: false },
      { shape: [4, 6, 5], axis: null, keepDims: false }, // every axis
      { shape: [3, 0], axis: 0, keepDims: false }, // empty columns
    ];
    for (const backend of ['wasm', 'cpu']) {
      await tf.setBackend(backend);
      const run = () =>
        cases.map(({ shape, axis, keepDims }) =>
          tf.tidy(() => {
            const size = shape.reduce((a, b) => a * b, 1);
            const x = tf.tensor(Float32Array.from({ length: size }, (_, i) => Math.sin(i) * 3 + 0.25), shape);
            const y = tf.sum(x, axis ?? undefined, keepDims);
            return { shape: y.shape, values: Array.from(y.dataSync()) };
          }),
        );
      const want = run();
      registerNativeKernels(backend);
      try {
        const got = run();
        got.forEach((g, i) => {
          expect(g.shape).toEqual(want[i].shape);
          g.values.forEach((v, j) => expect(Math.abs(v - want[i].values[j])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[i].values[j]))));
        });
        // int32 goes to the backend's own kernel
        expect(Array.from(tf.tidy(() => tf.sum(tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), 0).dataSync()))).toEqual([4, 6]);
      } finally {
        restoreTfjsKernels();
      }
    }
  });

  test('empty products', async () => {
    await compareWithReference('K = 0', ([a, b]) => [tf.matMul(a, b)], [input([3, 0], 1), input([0, 4], 2)]);
    await compareWithReference('M = 0', ([a, b]) => [tf.matMul(a, b)], [input([0, 5], 1), input([5, 4], 2)]);
  });
});
