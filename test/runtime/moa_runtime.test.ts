/**
 * The native runtime's attention experts (MoA, docs/design.md §12) against the plain-TypeScript reference forward
 * over the plan's own weights: every attention expert kept equals the dense model (logits and loss), top-k and
 * threshold attention experts equal the sparse reference, a mixed prefill/decode batch over two slots equals
 * one-sequence runs, bf16 attention matrices equal the reference on the rounded weights, the routing statistics
 * count attention experts, and plans with pruned attention experts read the packed subset under its original ids. Random dense models with weights large enough that router probabilities are far from
 * ties. Needs the addon (npm run build:native).
 */
import { convertCheckpoint, type AttentionConvertOptions } from '../../src/convert/convert_checkpoint';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { readPlan } from '../../src/plan/read_plan';
import type { LoadedPlan, PlanDtype } from '../../src/plan/plan_format';
import { planAttentionRules, planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import type { ModelConfig } from '../../src/model/config';
import { SparseModel } from '../../src/runtime/model';
import { loadNative } from '../../src/runtime/native';
import { nativeSpec } from '../../src/runtime/spec';
import { denseNames } from '../../src/plan/tensor_table';
import { randomDenseWeights, removeTempDirs, seededUniform, tempDir, writeDenseFolder } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

/** 4 attention experts × 2 heads over 2 kv heads (experts 0–1 read kv head 0); a shared expert. */
const config: ModelConfig = {
  vocab_size: 260,
  hidden_size: 48, // head dim 6; d not a multiple of 32
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  num_experts: 4,
  moe_intermediate_size: 12,
  shared_expert_intermediate_size: 6,
  num_experts_per_tok: 2,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  attention_experts: 4,
  heads_per_attention_expert: 2,
};

const denseDir = tempDir('moa-rt-dense');
writeDenseFolder(denseDir, config, randomDenseWeights(config, 21, 0.25));

async function convert(attention?: AttentionConvertOptions, dtype: PlanDtype = 'f32'): Promise<{ dir: string; loaded: LoadedPlan }> {
  const dir = tempDir('moa-rt-plan');
  await convertCheckpoint(readAnyDenseCheckpoint(denseDir), {
    outDir: dir,
    strategy: 'topk',
    k: 2,
    epsilon: 0.48,
    dtype,
    calibWindows: [],
    calibSource: 'none',
    renormalize: false,
    ...(attention ? { attention } : {}),
  });
  return { dir, loaded: readPlan(dir) };
}

function tokens(n: number, seed: number): number[] {
  const rand = seededUniform(seed);
  return Array.from({ length: n }, () => Math.floor(rand() * 256));
}

/** max |a − b| / max |b|. */
function relError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

const planReference = (loaded: LoadedPlan, ids: number[]) =>
  referenceForward(planWeights(loaded), ids, { routing: planRoutingRules(loaded.plan), attentionRouting: planAttentionRules(loaded.plan) }).logits;

const meanLoss = (logits: Float32Array, ids: number[]) => {
  const { sum, count } = nextTokenLoss(logits, ids, config.vocab_size);
  return sum / count;
};

const ids = tokens(23, 4);

describe('native MoA attention', () => {
  test('every attention expert kept: native logits = plan reference, native loss = the dense checkpoint\'s (relative < 1e-3)', async () => {
    const { dir, loaded } = await convert();
    const model = SparseModel.load(dir, { threads: 2 });
    const got = await model.logits(ids);
    expect(relError(got, planReference(loaded, ids))).toBeLessThan(1e-4);
    model.setMode('dense'); // every MLP expert too: the dense checkpoint's forward
    const dense = referenceForward(readAnyDenseCheckpoint(denseDir), ids).logits;
    const denseLoss = meanLoss(dense, ids);
    const score = await model.score(ids, { context: ids.length });
    expect(Math.abs(score.loss - denseLoss) / denseLoss).toBeLessThan(1e-3);
    expect(relError(await model.logits(ids), dense)).toBeLessThan(1e-4);
    const stats = model.routingStats();
    expect(stats.activeAttentionExperts).toBeCloseTo(4, 9);
    expect(stats.attentionExpertCounts).toHaveLength(2);
    expect(Array.from(stats.attentionExpertCounts![1])).toEqual([2, 2, 2, 2].map(() => stats.tokens));
    await model.dispose();
  });

  test.each([
    ['top-1', { strategy: 'topk' as const, k: 1 }],
    ['top-2', { strategy: 'topk' as const, k: 2 }],
    ['threshold ε 1.0 at most 3', { strategy: 'threshold' as const, k: 3, epsilon: 1.0 }],
  ])('%s attention experts: native logits = the sparse plan reference', async (_, attention) => {
    const { dir, loaded } = await convert(attention);
    const model = SparseModel.load(dir, { threads: 2 });
    const got = await model.logits(ids);
    const want = planReference(loaded, ids);
    expect(relError(got, want)).toBeLessThan(1e-4);
    const dense = referenceForward(readAnyDenseCheckpoint(denseDir), ids, { routing: planRoutingRules(loaded.plan) }).logits;
    expect(relError(got, dense)).toBeGreaterThan(1e-3); // the selection matters: not the all-experts result
    const stats = model.routingStats();
    const perToken = stats.activeAttentionExperts!;
    if (attention.strategy === 'topk') expect(perToken).toBeCloseTo(attention.k, 9);
    else expect(perToken).toBeGreaterThanOrEqual(1), expect(perToken).toBeLessThanOrEqual(3);
    // Routing override `dense`: every kept attention expert and every MLP expert, i.e. the dense model.
    model.setMode('dense');
    const all = referenceForward(readAnyDenseCheckpoint(denseDir), ids).logits;
    expect(relError(await model.logits(ids), all)).toBeLessThan(1e-4);
    await model.dispose();
  });

  test('a mixed batch (two prefills, then one decode of each slot in one call) equals one-sequence runs, top-2', async () => {
    const { loaded } = await convert({ strategy: 'topk', k: 2 });
    const addon = loadNative();
    const model = new addon.NativeModel(nativeSpec(loaded, 2));
    const ctx = model.newContext(2, 32);
    const a = tokens(9, 3);
    const b = tokens(6, 5);
    const V = config.vocab_size;
    const first = await ctx.evaluate(
      new Int32Array([...a.slice(0, 8), ...b.slice(0, 5)]),
      new Int32Array([...Array(8).fill(0), ...Array(5).fill(1)]),
      new Int32Array([...Array.from({ length: 8 }, (_, i) => i), ...Array.from({ length: 5 }, (_, i) => i)]),
      new Int32Array([7, 12]),
    );
    const second = await ctx.evaluate(new Int32Array([a[8], b[5]]), new Int32Array([0, 1]), new Int32Array([8, 5]), new Int32Array([0, 1]));
    const refA = planReference(loaded, a);
    const refB = planReference(loaded, b);
    expect(relError(first.subarray(0, V), refA.subarray(7 * V, 8 * V))).toBeLessThan(1e-4);
    expect(relError(first.subarray(V, 2 * V), refB.subarray(4 * V, 5 * V))).toBeLessThan(1e-4);
    expect(relError(second.subarray(0, V), refA.subarray(8 * V, 9 * V))).toBeLessThan(1e-4);
    expect(relError(second.subarray(V, 2 * V), refB.subarray(5 * V, 6 * V))).toBeLessThan(1e-4);
    model.dispose();
  });

  test('pruned attention experts: a never-selected one pruned changes nothing; `all` over the kept equals the naive reference', async () => {
    // Routers [v, −v, u, u/2] (see neverFourth): top-1 never selects attention expert 3.
    const weights = randomDenseWeights(config, 22, 0.25);
    const d = config.hidden_size;
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const router = weights.get(denseNames.attnRouter(l))!; // [A, d]
      for (let i = 0; i < d; i++) {
        router[d + i] = -router[i];
        router[3 * d + i] = 0.5 * router[2 * d + i];
      }
    }
    const dir = tempDir('moa-rt-dense-pruned');
    writeDenseFolder(dir, config, weights);
    const calib = [tokens(24, 7), tokens(24, 8)];
    const convertPruned = async (attention: AttentionConvertOptions, pruneBelow?: number) => {
      const out = tempDir('moa-rt-plan');
      await convertCheckpoint(readAnyDenseCheckpoint(dir), {
        outDir: out, strategy: 'topk', k: 4, epsilon: 0.48, dtype: 'f32', calibWindows: calib, calibSource: 'random bytes', renormalize: false, attention,
        ...(pruneBelow !== undefined ? { pruneBelow } : {}),
      });
      return { out, loaded: readPlan(out) };
    };
    const logitsOf = async (out: string, mode?: 'dense') => {
      const model = SparseModel.load(out, { threads: 2 });
      if (mode) model.setMode(mode);
      const logits = await model.logits(ids);
      await model.dispose();
      return logits;
    };

    const unpruned = await convertPruned({ strategy: 'topk', k: 1 });
    const pruned = await convertPruned({ strategy: 'topk', k: 1 }, 0.02);
    pruned.loaded.plan.layers.forEach((layer) => expect(layer.ops[3]).toMatchObject({ op: 'attention', kept: [0, 1, 2] }));
    const got = await logitsOf(pruned.out);
    expect(relError(got, await logitsOf(unpruned.out))).toBeLessThan(1e-6);
    expect(relError(got, planReference(pruned.loaded, ids))).toBeLessThan(1e-4);

    // Every kept attention expert (`all`), pruned by the threshold's load: the dense checkpoint with each layer's
    // attention restricted to the kept experts, also under the `dense` routing override.
    const all = await convertPruned({ strategy: 'all', epsilon: 1.0 }, 0.4);
    const kept = all.loaded.plan.layers.map((layer) => (layer.ops[3] as { kept: number[] }).kept);
    expect(kept.some((k) => k.length < 4)).toBe(true);
    const naive = referenceForward(readAnyDenseCheckpoint(dir), ids, { attentionRouting: kept.map((k) => ({ mode: 'topk' as const, k: k.length, kept: k })) }).logits;
    expect(relError(await logitsOf(all.out), naive)).toBeLessThan(1e-4);
    expect(relError(await logitsOf(all.out, 'dense'), naive)).toBeLessThan(1e-4);
  });

  test('bf16 attention matrices: the reference on the same rounded weights, top-2', async () => {
    const { dir, loaded } = await convert({ strategy: 'topk', k: 2 }, 'bf16');
    const model = SparseModel.load(dir, { threads: 2 });
    expect(relError(await model.logits(ids), planReference(loaded, ids))).toBeLessThan(1e-4);
    await model.dispose();
  });
});
