/**
 * A shrunken tiny recipe trained for N steps on the wasm backend (the trainer's default) gives the same loss curve
 * with tfjs's kernels and with the addon's kernels inside tfjs. Same initial parameters, same batches; the only
 * difference is the summation order inside matrix products (f32), which AdamW's normalised updates carry forward.
 * Tolerance: |loss_native − loss_tfjs| ≤ 1e-4 · loss_tfjs at every step.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { syntheticBatch, TrainingStepHarness } from '../../../src/bench/train_kernels';
import { loadRecipe, Recipe } from '../../../src/recipe';
import { selectBackend } from '../../../src/train/backend';
import { registerNativeKernels, restoreTfjsKernels } from '../../../src/train/native_kernels';
import { describeWithAddonFor } from '../../helpers/native_kernels';

const describeWithAddon = describeWithAddonFor('native-kernels training test');

const STEPS = 8;
const RELATIVE_TOLERANCE = 1e-4;

/** recipes/tiny.yaml at a size that trains in seconds: d 32, 2 layers, 4 heads over 2 KV heads, 4 experts × 16. */
function shrunkenTiny(): Recipe {
  const tiny = loadRecipe(path.resolve(__dirname, '..', '..', '..', 'recipes', 'tiny.yaml'));
  return {
    ...tiny,
    model: { ...tiny.model, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, num_experts: 4, moe_intermediate_size: 16, max_position_embeddings: 16 },
    data: { ...tiny.data, seq_len: 16 },
    train: { ...tiny.train, batch_size: 4, lr: 3e-3 },
  };
}

function lossCurve(recipe: Recipe): number[] {
  const harness = new TrainingStepHarness(recipe);
  try {
    const losses: number[] = [];
    for (let step = 0; step < STEPS; step++) {
      const batch = syntheticBatch(step, recipe.train.batch_size, recipe.data.seq_len, recipe.model.vocab_size);
      losses.push(harness.step(batch.inputs, batch.targets, recipe.train.lr));
    }
    return losses;
  } finally {
    harness.dispose();
  }
}

describeWithAddon('training with native kernels', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  afterAll(() => {
    restoreTfjsKernels();
  });

  test(`${STEPS} steps give the same loss curve with and without native kernels (relative ${RELATIVE_TOLERANCE})`, () => {
    const recipe = shrunkenTiny();
    restoreTfjsKernels();
    const reference = lossCurve(recipe);
    expect(registerNativeKernels('wasm').registered).toContain('BatchMatMul');
    const native = lossCurve(recipe);
    restoreTfjsKernels();
    expect(reference[STEPS - 1]).toBeLessThan(reference[0]); // it trains
    for (let step = 0; step < STEPS; step++) {
      const relative = Math.abs(native[step] - reference[step]) / Math.abs(reference[step]);
      if (!(relative <= RELATIVE_TOLERANCE)) {
        throw new Error(`step ${step + 1}: loss ${native[step]} with native kernels vs ${reference[step]} (relative ${relative.toExponential(2)})`);
      }
    }
    expect(tf.getBackend()).toBe('wasm');
  });
});
