/**
 * bf16 compute (train.compute_dtype / --compute-dtype bf16): the addon's bf16 GEMM (operands rounded to bf16 when
 * packed, products summed in f32 by vdpbf16ps) against its reference twin and against the f32 product; the
 * refusal where the CPU (or DSMOE_SIMD) lacks AVX-512 BF16; the recipe field; and a short training run whose loss
 * stays near the f32 run's.
 *
 * Tolerances, with S = Σ_k |a_k·b_k| (the sum of the products' magnitudes, from the reference on |A|, |B|):
 *  - against the reference (same bf16 operands, sums in double): |fast − ref| ≤ 1e-6·S (f32 sums of ≤ 513 terms in
 *    another order: the f32 rounding of the partial sums, ≈ 17 ulps of S);
 *  - against the f32 product: |fast − f32| ≤ 1.01·2^-7·S (bf16 keeps 8 significant bits: each operand's relative
 *    rounding is ≤ 2^-8, each product's ≤ 2^-7 + 2^-16), and the largest difference is above 1e-5·S (the operands
 *    were rounded).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { syntheticBatch, TrainingStepHarness } from '../../../src/bench/train_kernels';
import { loadRecipe, Recipe } from '../../../src/recipe';
import { ADDON_PATH, loadNative } from '../../../src/runtime/native';
import { selectBackend } from '../../../src/train/backend';
import { applyKernelChoice, registerNativeKernels, restoreTfjsKernels } from '../../../src/train/native_kernels';
import { describeWithAddonFor, randomValues } from '../../helpers/native_kernels';

const addonBuilt = fs.existsSync(ADDON_PATH);
const hasBf16 = addonBuilt && loadNative().cpuInfo().bf16;
if (addonBuilt && !hasBf16) {
  // eslint-disable-next-line no-console
  console.warn('bf16 compute: this CPU has no AVX-512 BF16; only the refusal is tested');
}
const describeWithAddon = describeWithAddonFor('bf16 compute tests');
const describeWithBf16 = hasBf16 ? describe : describe.skip;

const abs = (x: Float32Array) => x.map(Math.abs);

// [M, N, K]: across the micro-kernel's 12 rows and 32 columns, its 120-row × 256-column tiles, odd K (a padded
// pair), K across the 256-deep slice, K = 1.
const shapes: [number, number, number][] = [
  [1, 1, 1],
  [13, 33, 29],
  [121, 257, 30],
  [25, 70, 513],
  [5, 31, 257],
];

describeWithBf16('bf16 GEMM', () => {
  const { kernels } = loadNative();

  test.each(shapes)('M %i N %i K %i, every transpose: against the bf16 reference and the f32 product', (M, N, K) => {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const A = randomValues(M * K, 7 + M), B = randomValues(K * N, 11 + N);
        const fast = kernels.gemm(A, B, M, N, K, transA, transB, { compute: 'bf16', threads: 2 });
        const ref = kernels.gemm(A, B, M, N, K, transA, transB, { compute: 'bf16', impl: 'ref' });
        const f32 = kernels.gemm(A, B, M, N, K, transA, transB, { impl: 'ref' });
        const S = kernels.gemm(abs(A), abs(B), M, N, K, transA, transB, { compute: 'bf16', impl: 'ref' });
        let worstVsF32 = 0;
        for (let i = 0; i < M * N; i++) {
          const what = `M ${M} N ${N} K ${K} tA ${transA} tB ${transB} element ${i}`;
          if (!(Math.abs(fast[i] - ref[i]) <= 1e-6 * S[i])) throw new Error(`${what}: ${fast[i]} vs bf16 reference ${ref[i]} (S ${S[i]})`);
          if (!(Math.abs(fast[i] - f32[i]) <= 1.01 * 2 ** -7 * S[i])) throw new Error(`${what}: ${fast[i]} vs f32 ${f32[i]} (S ${S[i]})`);
          worstVsF32 = Math.max(worstVsF32, Math.abs(fast[i] - f32[i]) / S[i]);
        }
        if (K > 1) expect(worstVsF32).toBeGreaterThan(1e-5);
      }
    }
  });

  test('batch entries read through an index (broadcast operands) and written into out', () => {
    const M = 14, N = 40, K = 33, count = 3;
    const A = randomValues(2 * M * K, 3), B = randomValues(K * N, 5);
    const aIndex = Int32Array.from([1, 0, 1]), bIndex = Int32Array.from([0, 0, 0]);
    const out = new Float32Array(count * M * N).fill(Number.NaN);
    kernels.gemm(A, B, M, N, K, false, true, { compute: 'bf16', threads: 2, count, aIndex, bIndex, out });
    const ref = kernels.gemm(A, B, M, N, K, false, true, { compute: 'bf16', impl: 'ref', count, aIndex, bIndex });
    const S = kernels.gemm(abs(A), abs(B), M, N, K, false, true, { compute: 'bf16', impl: 'ref', count, aIndex, bIndex });
    for (let i = 0; i < out.length; i++) {
      if (!(Math.abs(out[i] - ref[i]) <= 1e-6 * S[i])) throw new Error(`element ${i}: ${out[i]} vs ${ref[i]}`);
    }
  });

  test('an unknown compute dtype is refused by name', () => {
    expect(() => kernels.gemm(new Float32Array(1), new Float32Array(1), 1, 1, 1, false, false, { compute: 'f16' as 'bf16' })).toThrow(
      "compute must be 'f32' or 'bf16', got 'f16'",
    );
  });
});

describeWithAddon('bf16 compute refused without AVX-512 BF16', () => {
  test('DSMOE_SIMD=avx2: cpuInfo().bf16 is false and the addon refuses compute bf16 with one line', () => {
    const script = `const a = require(${JSON.stringify(ADDON_PATH)});
      const x = new Float32Array(4);
      let message = 'no error';
      try { a.kernels.gemm(x, x, 2, 2, 2, false, false, { compute: 'bf16' }); } catch (e) { message = e.message; }
      console.log(JSON.stringify({ bf16: a.cpuInfo().bf16, message }));`;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, DSMOE_SIMD: 'avx2' } });
    expect(child.status).toBe(0);
    const { bf16, message } = JSON.parse(child.stdout.trim());
    expect(bf16).toBe(false);
    expect(message).toMatch(/^compute 'bf16' needs a CPU with AVX-512 BF16 and the AVX-512 kernels \(this one runs (avx2|scalar)\)$/);
  });

  test('forced to AVX2 in process: registerNativeKernels and applyKernelChoice refuse compute bf16', async () => {
    const addon = loadNative();
    await selectBackend('wasm');
    const detected = addon.cpuInfo().detected;
    addon.setSimd('avx2');
    try {
      expect(addon.cpuInfo().bf16).toBe(false);
      expect(() => registerNativeKernels('wasm', { compute: 'bf16' })).toThrow(/^compute dtype bf16: expected a CPU with AVX-512 BF16 and the AVX-512 kernels, this one runs (avx2|scalar)/);
      expect(() => applyKernelChoice('native', 'wasm', undefined, 'bf16')).toThrow(/compute dtype bf16: expected a CPU with AVX-512 BF16/);
      expect(() => applyKernelChoice('tfjs', 'wasm', undefined, 'bf16')).toThrow('compute dtype bf16 needs the native kernels: --kernels tfjs was given');
    } finally {
      addon.setSimd(detected);
      restoreTfjsKernels();
    }
  });
});

describe('train.compute_dtype in a recipe', () => {
  const tiny = path.resolve(__dirname, '..', '..', '..', 'recipes', 'tiny.yaml');
  const withField = (value: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-compute-'));
    const file = path.join(dir, 'r.yaml');
    fs.writeFileSync(file, fs.readFileSync(tiny, 'utf8').replace(/^train:\n/m, `train:\n  compute_dtype: ${value}\n`));
    return file;
  };

  test('left out of the resolved recipe at f32, present at bf16, anything else refused by name', () => {
    expect('compute_dtype' in loadRecipe(tiny).train).toBe(false);
    expect('compute_dtype' in loadRecipe(withField('f32')).train).toBe(false);
    expect(loadRecipe(withField('bf16')).train.compute_dtype).toBe('bf16');
    expect(() => loadRecipe(withField('f16'))).toThrow(/train\.compute_dtype/);
  });
});

/** recipes/tiny.yaml shrunken to train in seconds (as training_step.test.ts). */
function shrunkenTiny(): Recipe {
  const tiny = loadRecipe(path.resolve(__dirname, '..', '..', '..', 'recipes', 'tiny.yaml'));
  return {
    ...tiny,
    model: { ...tiny.model, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, num_experts: 4, moe_intermediate_size: 16, max_position_embeddings: 16 },
    data: { ...tiny.data, seq_len: 16 },
    train: { ...tiny.train, batch_size: 4, lr: 3e-3 },
  };
}

function lossCurve(recipe: Recipe, steps: number): number[] {
  const harness = new TrainingStepHarness(recipe);
  try {
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) {
      const batch = syntheticBatch(step, recipe.train.batch_size, recipe.data.seq_len, recipe.model.vocab_size);
      losses.push(harness.step(batch.inputs, batch.targets, recipe.train.lr));
    }
    return losses;
  } finally {
    harness.dispose();
  }
}

describeWithBf16('training with bf16 compute', () => {
  const STEPS = 10;
  const TOLERANCE = 0.01; // relative, per step; docs/training-kernels.md has the 50-step comparison

  afterAll(() => restoreTfjsKernels());

  test(`${STEPS} steps: the loss stays within ${TOLERANCE * 100}% of the f32 run's at every step, and is not identical`, async () => {
    await selectBackend('wasm');
    const recipe = shrunkenTiny();
    registerNativeKernels('wasm', { compute: 'f32' });
    const f32 = lossCurve(recipe, STEPS);
    registerNativeKernels('wasm', { compute: 'bf16' });
    const bf16 = lossCurve(recipe, STEPS);
    restoreTfjsKernels();
    expect(f32[STEPS - 1]).toBeLessThan(f32[0]); // it trains
    let largest = 0;
    for (let step = 0; step < STEPS; step++) {
      const relative = Math.abs(bf16[step] - f32[step]) / f32[step];
      if (!(relative <= TOLERANCE)) throw new Error(`step ${step + 1}: loss ${bf16[step]} with bf16 compute vs ${f32[step]} with f32`);
      largest = Math.max(largest, relative);
    }
    expect(largest).toBeGreaterThan(0); // the products really ran in bf16
    expect(tf.getBackend()).toBe('wasm');
  });
});
