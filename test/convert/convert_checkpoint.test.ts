import * as fs from 'fs';
import * as path from 'path';
import { denseNames } from '../../src/plan/tensor_table';
import { readSafetensors, roundToBf16, writeSafetensors } from '../../src/checkpoint/safetensors';
import { convertCheckpoint, type ConvertOptions } from '../../src/convert/convert_checkpoint';
import { planCost } from '../../src/plan/cost';
import { layerOps } from '../../src/plan/plan_format';
import { readPlan } from '../../src/plan/read_plan';
import { planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { kFromThresholdMean, keptAfterPruning, layerRoutingStats } from '../../src/convert/routing_stats';
import { parameterCounts, type ModelConfig } from '../../src/model/config';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import { CalibrationRunner } from '../../src/convert/calibration_pass';
import { denseShapes, randomDenseWeights, seededUniform, tempDir, tinyConfig, writeDenseFolder, removeTempDirs } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

/** Held-out windows of random byte tokens. */
function windows(count: number, length: number, seed: number): number[][] {
  const rand = seededUniform(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(rand() * 256)));
}

function denseFolder(config: ModelConfig, seed: number, edit?: (w: Map<string, Float32Array>) => void): string {
  const dir = tempDir('dense');
  const weights = randomDenseWeights(config, seed);
  edit?.(weights);
  writeDenseFolder(dir, config, weights);
  return dir;
}

async function convert(denseDir: string, options: Partial<ConvertOptions>) {
  const outDir = tempDir('sparse');
  const result = await convertCheckpoint(readAnyDenseCheckpoint(denseDir), {
    outDir,
    strategy: 'topk',
    epsilon: 0.48,
    dtype: 'f32',
    calibWindows: windows(3, 16, 1),
    calibSource: 'random bytes',
    renormalize: false,
    ...options,
  });
  return { ...result, outDir };
}

const withShared: ModelConfig = { ...tinyConfig, shared_expert_intermediate_size: 5, tie_word_embeddings: true };

describe('dense first layers (first_k_dense_replace)', () => {
  // layer 0 a dense MLP of width 12 with a shared expert configured for the MoE layers only; layers 1 and 2 one pool
  const config: ModelConfig = { ...withShared, num_hidden_layers: 3, first_k_dense_replace: 1, intermediate_size: 12, experts_shared_frequency: 2 };

  test.each(['threshold', 'threshold-topk'] as const)('calibrated %s with pruning: the dense layer keeps its one expert, selected with weight 1, and the plan weights give the dense folder logits under the plan routing', async (strategy) => {
    const denseDir = denseFolder(config, 5);
    const { plan, calibration, outDir } = await convert(denseDir, { strategy, k: 3, pruneBelow: 0.2 });
    const layer0 = layerOps(plan.layers[0]);
    expect(layer0.select).toEqual({ op: 'select', mode: 'topk', k: 1, epsilon: 0.48, k_max: 1, renormalize: true });
    expect(layer0.experts).toMatchObject({ kept: [0], intermediate_size: 12 });
    expect(layer0.shared).toBeNull();
    expect(layerOps(plan.layers[1]).shared).not.toBeNull();
    expect(plan.calibration!.layers[0]).toMatchObject({ k: 1, mass_covered: 1, never_selected: [1, 2, 3] });
    expect(calibration!.layers[0].pruned).toEqual([]); // a dense layer has nothing to prune
    // the plan's dense layer is the checkpoint's MLP, packed exactly: under the plan's routing the plan's weights and
    // the dense folder's give the same logits.
    const loaded = readPlan(outDir);
    const ids = windows(1, 12, 9)[0];
    const dense = readAnyDenseCheckpoint(denseDir);
    const viaPlan = referenceForward(planWeights(loaded), ids, { routing: planRoutingRules(plan) }).logits;
    const viaDense = referenceForward(dense, ids, { routing: planRoutingRules(plan) }).logits;
    expect(Array.from(viaPlan)).toEqual(Array.from(viaDense));
    // cost: the dense layer's MLP counted once as stored and as active, no router
    expect(plan.cost.total_params).toBe(parameterCounts(config).total - layer1Pruned(plan, config));
  });
});

/** Parameters of the experts a plan pruned from its pools (stored parameters the config counts and the plan does not). */
function layer1Pruned(plan: { layers: { ops: unknown[] }[] }, config: ModelConfig): number {
  const kept = layerOps(plan.layers[1] as never).experts.kept.length;
  return (config.num_experts - kept) * 3 * config.hidden_size * config.moe_intermediate_size;
}

describe('convert round trip', () => {
  test.each([
    ['no shared expert, untied', tinyConfig],
    ['shared expert, tied', withShared],
  ])('top-k with k = E packs every tensor exactly in f32 (%s)', async (_, config) => {
    const denseDir = denseFolder(config, 3);
    const { outDir, plan } = await convert(denseDir, { k: config.num_experts });
    const loaded = readPlan(outDir);
    const unpacked = planWeights(loaded);
    const source = readSafetensors(path.join(denseDir, 'model.safetensors'));
    for (const [name] of denseShapes(config)) {
      if (name === denseNames.sharedExpertGate(0) && config.shared_expert_intermediate_size === 0) continue;
      if (name.startsWith('model.layers.1.mlp.shared_expert_gate') && config.shared_expert_intermediate_size === 0) continue;
      expect(Array.from(unpacked.get(name))).toEqual(Array.from(source.get(name)));
    }
    expect(plan.source.model_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.existsSync(path.join(outDir, 'tokenizer.json'))).toBe(true);
    expect(fs.existsSync(path.join(outDir, 'calibration.json'))).toBe(true);
    // the plan's reference forward is the dense model's
    const tokens = [5, 99, 250, 3, 3, 17];
    const dense = referenceForward(readAnyDenseCheckpoint(denseDir), tokens).logits;
    const sparse = referenceForward(unpacked, tokens, { routing: planRoutingRules(loaded.plan) }).logits;
    expect(Array.from(sparse)).toEqual(Array.from(dense));
  });

  test('bf16 packs every matrix rounded to nearest even, and keeps norms, biases and routers in f32', async () => {
    const denseDir = denseFolder(tinyConfig, 4);
    const { outDir } = await convert(denseDir, { k: 4, dtype: 'bf16' });
    const loaded = readPlan(outDir);
    expect(loaded.header.tensors.get('layers.0.attn.qkv')!.dtype).toBe('BF16');
    expect(loaded.header.tensors.get('layers.0.router')!.dtype).toBe('F32');
    const unpacked = planWeights(loaded);
    const source = readSafetensors(path.join(denseDir, 'model.safetensors'));
    for (const name of [denseNames.q(1), denseNames.expertDown(1, 3), denseNames.lmHead, denseNames.embed]) {
      expect(Array.from(unpacked.get(name))).toEqual(Array.from(source.get(name), roundToBf16));
    }
    for (const name of [denseNames.router(0), denseNames.qBias(1), denseNames.postAttentionNorm(0), denseNames.finalNorm]) {
      expect(Array.from(unpacked.get(name))).toEqual(Array.from(source.get(name)));
    }
  });
});

describe('calibration rules', () => {
  test('threshold counts and mass on hand-made probabilities', () => {
    const probs = new Float32Array([0.5, 0.3, 0.1, 0.1, /**/ 0.97, 0.01, 0.01, 0.01, /**/ 0.25, 0.25, 0.25, 0.25]);
    // E·p: [2, 1.2, .4, .4] → 2 experts; [3.88, ...] → 1; [1, 1, 1, 1] → 4
    const threshold = layerRoutingStats(probs, 4, { mode: 'threshold', epsilon: 0.48 });
    expect(threshold.meanSelected).toBeCloseTo(7 / 3, 6);
    expect(threshold.selectedHistogram).toEqual([0, 1, 1, 0, 1]);
    expect(threshold.expertLoad.map((x) => x * 3)).toEqual([3, 2, 1, 1].map((x) => expect.closeTo(x, 6)));
    expect(threshold.massCovered).toBeCloseTo((0.8 + 0.97 + 1) / 3, 6);
    expect(kFromThresholdMean(threshold.meanSelected, 4)).toBe(3);
    const top3 = layerRoutingStats(probs, 4, { mode: 'topk', k: 3 });
    expect(top3.massCovered).toBeCloseTo((0.9 + 0.99 + 0.75) / 3, 6);
    expect(top3.neverSelected).toEqual([3]); // ties go to the lower id: expert 2 beats expert 3 every time
    const top1 = layerRoutingStats(probs, 4, { mode: 'topk', k: 1 });
    expect(top1.neverSelected).toEqual([1, 2, 3]);
  });

  test('k rule: the ceiling of the mean less 0.05, within 1..available', () => {
    expect(kFromThresholdMean(1.0, 8)).toBe(1);
    expect(kFromThresholdMean(1.06, 8)).toBe(2);
    expect(kFromThresholdMean(2.001, 8)).toBe(2); // 1 token in 1024 with an extra expert does not cost every token one
    expect(kFromThresholdMean(2.5, 8)).toBe(3);
    expect(kFromThresholdMean(7.5, 4)).toBe(4);
    expect(kFromThresholdMean(0, 4)).toBe(1);
  });

  test('pruning keeps experts at or above the share, and never fewer than k', () => {
    expect(keptAfterPruning([0.5, 0.01, 0.3, 0.0], 0.05, 1)).toEqual([0, 2]);
    expect(keptAfterPruning([0.5, 0.01, 0.3, 0.0], 0.05, 3)).toEqual([0, 1, 2]);
    expect(keptAfterPruning([0.5, 0.01, 0.3, 0.0], 0.6, 1)).toEqual([0]);
  });
});

describe('convert strategies', () => {
  test('threshold-topk picks k per layer from the threshold mean', async () => {
    // Layer 0's router is zero: p uniform, E·p = 1 > 0.48 for every expert, so k = E. Layer 1's router is large:
    // p is peaked, and k is the ceiling of its threshold mean, computed here independently of the converter.
    const denseDir = denseFolder(tinyConfig, 6, (w) => {
      w.set(denseNames.router(0), new Float32Array(4 * 8));
      w.set(denseNames.router(1), w.get(denseNames.router(1))!.map((x) => x * 30));
    });
    const calib = windows(3, 16, 2);
    const { plan, calibration, table } = await convert(denseDir, { strategy: 'threshold-topk', calibWindows: calib });
    expect(layerOps(plan.layers[0]).select).toMatchObject({ mode: 'topk', k: 4 });
    const dense = readAnyDenseCheckpoint(denseDir);
    let count = 0;
    let tokens = 0;
    for (const w of calib) {
      const { routerProbs } = referenceForward(dense, w, { routing: { mode: 'threshold', epsilon: 0.48 }, collectRouterProbs: true });
      const p = routerProbs![1];
      for (let t = 0; t < w.length; t++) {
        count += Array.from(p.subarray(t * 4, t * 4 + 4)).filter((x) => 4 * x > 0.48).length || 1;
        tokens++;
      }
    }
    const expectedK = Math.max(1, Math.ceil(count / tokens - 0.05));
    expect(expectedK).toBeLessThan(4);
    expect(layerOps(plan.layers[1]).select.k).toBe(expectedK);
    expect(calibration!.layers[1].threshold_mean_selected).toBeCloseTo(count / tokens, 9);
    expect(calibration!.layers[0].mass_covered).toBeCloseTo(1, 6);
    expect(plan.strategy).toEqual({ name: 'threshold-topk', k: null, epsilon: 0.48, calib_tokens: 48 });
    expect(table).toMatch(/^layer +mode/);
    expect(Number.isFinite(calibration!.loss.dense!)).toBe(true);
  });

  test('threshold writes threshold select ops, costed at the mean selected count', async () => {
    const denseDir = denseFolder(tinyConfig, 7);
    const { plan, calibration } = await convert(denseDir, { strategy: 'threshold', epsilon: 0.9 });
    const select = layerOps(plan.layers[0]).select;
    expect(select).toMatchObject({ mode: 'threshold', epsilon: 0.9, k_max: 4, renormalize: false });
    const means = calibration!.layers.map((l) => l.mean_selected);
    const expected = planCost(tinyConfig, 'f32', [4, 4], means);
    expect(plan.cost.active_params_per_token).toBeCloseTo(expected.active_params_per_token, 6);
  });

  test('pruning removes experts no calibration token selects, without changing the loss', async () => {
    // Layer 1's router is zero: all probabilities tie, so top-2 always picks experts 0 and 1 (lower ids win).
    const denseDir = denseFolder(tinyConfig, 8, (w) => w.set(denseNames.router(1), new Float32Array(4 * 8)));
    const { plan, calibration, outDir } = await convert(denseDir, { strategy: 'topk', k: 2, pruneBelow: 0.01 });
    expect(layerOps(plan.layers[1]).experts.kept).toEqual([0, 1]);
    expect(calibration!.layers[1].pruned).toEqual([2, 3]);
    expect(calibration!.layers[1].expert_load).toEqual([1, 1, 0, 0]);
    expect(calibration!.loss.pruned).toBe(calibration!.loss.plan);
    const loaded = readPlan(outDir);
    expect(loaded.header.tensors.get('layers.1.experts.gate_up')!.shape).toEqual([2, 12, 8]);
    expect(() => planWeights(loaded).get(denseNames.expertGate(1, 3))).toThrow(/expert 3 of layer 1 was pruned/);
    expect(plan.cost.total_params).toBe(parameterCounts(tinyConfig).total - 2 * parameterCounts(tinyConfig).expertPerExpert);
  });

  test('pruning a used expert changes the loss, and the report says so', async () => {
    const denseDir = denseFolder(tinyConfig, 9);
    const { calibration, plan } = await convert(denseDir, { strategy: 'topk', k: 1, pruneBelow: 0.6 });
    const kept = plan.layers.map((l) => layerOps(l).experts.kept.length);
    expect(Math.min(...kept)).toBeGreaterThanOrEqual(1);
    expect(kept.some((n) => n < 4)).toBe(true);
    expect(calibration!.loss.pruned).not.toBe(calibration!.loss.plan);
  });

  test('the renormalize option and norm_topk_prob are written into the plan', async () => {
    const denseDir = denseFolder(tinyConfig, 10);
    const { plan } = await convert(denseDir, { strategy: 'topk', k: 2, renormalize: true });
    expect(layerOps(plan.layers[0]).select.renormalize).toBe(true);
    expect(plan.source.routing_rule).toBe('softmax-renormalized');
  });
});

describe('cost', () => {
  // tinyConfig: V 260, d 8, L 2, H 2, KV 1, hd 4, E 4, I 6, untied. qkv rows (2 + 2·1)·4 = 16.
  // per layer: matrices qkv 16·8 + o 8·8 = 192; f32 norms 2·8 + qkv bias 16 + router 4·8 = 64; expert 3·6·8 = 144.
  test('figures against hand computation', () => {
    const cost = planCost(tinyConfig, 'f32', [4, 4], [2, 2]);
    expect(cost.total_params).toBe(260 * 8 + 8 + 260 * 8 + 2 * (192 + 64 + 4 * 144));
    expect(cost.active_params_per_token).toBe(8 + 260 * 8 + 2 * (192 + 64 + 2 * 144));
    expect(cost.dense_active_params_per_token).toBe(8 + 260 * 8 + 2 * (192 + 64 + 4 * 144));
    expect(cost.dense_active_params_per_token).toBe(parameterCounts(tinyConfig).activePerToken(4));
    expect(cost.active_flops_per_token).toBe(2 * (260 * 8 + 2 * (192 + 4 * 8 + 2 * 144)));
    expect(cost.dense_flops_per_token).toBe(2 * (260 * 8 + 2 * (192 + 4 * 8 + 4 * 144)));
    expect(cost.active_weight_bytes_per_token).toBe(8 * 4 + 260 * 8 * 4 + 8 * 4 + 2 * ((192 + 2 * 144) * 4 + 64 * 4));
    expect(cost.attention_flops_per_context_token).toBe(4 * 2 * 2 * 4);
    const bf16 = planCost(tinyConfig, 'bf16', [4, 4], [2, 2]);
    expect(bf16.active_weight_bytes_per_token).toBe(8 * 4 + 260 * 8 * 2 + 8 * 2 + 2 * ((192 + 2 * 144) * 2 + 64 * 4));
    expect(bf16.dense_weight_bytes_per_token).toBe(8 * 4 + 260 * 8 * 2 + 8 * 2 + 2 * ((192 + 4 * 144) * 2 + 64 * 4));
  });
});

describe('convert refuses', () => {
  test('a missing folder, config or model', () => {
    expect(() => readAnyDenseCheckpoint('/nonexistent/dense')).toThrow(/not a directory/);
    const dir = denseFolder(tinyConfig, 1);
    fs.rmSync(path.join(dir, 'model.safetensors'));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/model\.safetensors: missing/);
  });

  test('a corrupt config or model file', () => {
    const dir = denseFolder(tinyConfig, 1);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "qwen2_moe", "hidden_size": ');
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/config\.json: not valid JSON/);
    const dir2 = denseFolder(tinyConfig, 1);
    const model = path.join(dir2, 'model.safetensors');
    fs.truncateSync(model, fs.statSync(model).size - 8);
    expect(() => readAnyDenseCheckpoint(dir2)).toThrow(/model\.safetensors: not a valid safetensors file/);
  });

  test('another architecture or an inconsistent config', () => {
    const dir = denseFolder(tinyConfig, 1);
    const configPath = path.join(dir, 'config.json');
    const hf = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    fs.writeFileSync(configPath, JSON.stringify({ ...hf, model_type: 'llama' }));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/model_type must be "qwen2_moe", got "llama"/);
    fs.writeFileSync(configPath, JSON.stringify({ ...hf, num_key_value_heads: 3 }));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/num_attention_heads \(2\) must be a multiple of num_key_value_heads \(3\)/);
  });

  test('tensors of the wrong shape, missing, or not finite', () => {
    const dir = denseFolder({ ...tinyConfig, moe_intermediate_size: 6 }, 1);
    const configPath = path.join(dir, 'config.json');
    const hf = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    fs.writeFileSync(configPath, JSON.stringify({ ...hf, moe_intermediate_size: 7 }));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/tensor model\.layers\.0\.mlp\.experts\.0\.gate_proj\.weight has shape \[6, 8\], expected \[7, 8\]/);
    const dir2 = denseFolder(tinyConfig, 1);
    const model = readSafetensors(path.join(dir2, 'model.safetensors'));
    const kept = denseShapes(tinyConfig).filter(([name]) => !name.startsWith('model.layers.1.mlp.experts.3.'));
    writeSafetensors(path.join(dir2, 'model.safetensors'), kept.map(([name, shape]) => ({ name, shape, dtype: 'F32' as const, data: model.get(name) })));
    expect(() => readAnyDenseCheckpoint(dir2)).toThrow(/missing 3 tensor\(s\) the model needs: model\.layers\.1\.mlp\.experts\.3\.gate_proj\.weight/);
    const nan = denseFolder(tinyConfig, 1, (w) => (w.get(denseNames.o(1))![5] = NaN));
    expect(() => readAnyDenseCheckpoint(nan)).toThrow(/tensor model\.layers\.1\.self_attn\.o_proj\.weight holds a non-finite value \(NaN\) at element 5/);
  });

  test('k out of range, threshold-topk without calibration tokens, --out equal to the input', async () => {
    const dir = denseFolder(tinyConfig, 1);
    await expect(convert(dir, { k: 5 })).rejects.toThrow(/--k must be an integer in 1\.\.4/);
    await expect(convert(dir, { strategy: 'threshold-topk', calibWindows: [] })).rejects.toThrow(/needs calibration tokens/);
    await expect(
      convertCheckpoint(readAnyDenseCheckpoint(dir), { outDir: dir, strategy: 'topk', epsilon: 0.48, dtype: 'f32', calibWindows: [], calibSource: '', renormalize: false }),
    ).rejects.toThrow(/--out must differ/);
  });
});

describe('calibration passes', () => {
  test('the runner reassembles router probabilities in window order and averages the loss over predictions', async () => {
    const weights = weightsSourceFor(12);
    const calib = windows(3, 8, 4);
    const runner = CalibrationRunner.create(weights, '(in-process)', 1);
    const rules = [{ mode: 'topk' as const, k: 2 }, { mode: 'dense' as const }];
    const pass = await runner.run(calib, { mlp: rules, attention: [] });
    await runner.close();
    let sum = 0;
    calib.forEach((w, j) => {
      const result = referenceForward(weights, w, { routing: rules, collectRouterProbs: true });
      expect(Array.from(pass.probs[1].subarray(j * 8 * 4, (j + 1) * 8 * 4))).toEqual(Array.from(result.routerProbs![1]));
      sum += nextTokenLoss(result.logits, w, tinyConfig.vocab_size).sum;
    });
    expect(pass.loss).toBeCloseTo(sum / (3 * 7), 12);
  });
});

function weightsSourceFor(seed: number) {
  const weights = randomDenseWeights(tinyConfig, seed);
  return { config: tinyConfig, get: (name: string) => weights.get(name)! };
}
