/**
 * Plans of models with attention experts (MoA, docs/design.md §12): convert packs the kept experts' q rows, q bias
 * and W_o columns per the table, the plan reference (planWeights + planAttentionRules) computes the dense model's
 * logits when every attention expert is kept and the sparse rule's otherwise, the cost counts attention experts,
 * pruning drops the rarely selected ones, and validation names what is wrong.
 */
import * as fs from 'fs';
import * as path from 'path';
import { convertCheckpoint, type ConvertOptions } from '../../src/convert/convert_checkpoint';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { readPlan } from '../../src/plan/read_plan';
import { layerOps } from '../../src/plan/plan_format';
import { planAttentionRules, planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { costSplit } from '../../src/plan/cost';
import { denseNames } from '../../src/plan/tensor_table';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import { headDim, type ModelConfig } from '../../src/model/config';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import { randomDenseWeights, removeTempDirs, seededUniform, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

/** 4 attention experts of 2 heads over 2 kv heads: experts 0–1 read kv head 0, experts 2–3 kv head 1. */
const moa: ModelConfig = {
  ...tinyConfig,
  hidden_size: 16,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  attention_experts: 4,
  heads_per_attention_expert: 2,
};

function denseFolder(config: ModelConfig, seed: number): string {
  const dir = tempDir('moa-dense');
  writeDenseFolder(dir, config, randomDenseWeights(config, seed));
  return dir;
}

async function convert(denseDir: string, options: Partial<ConvertOptions>) {
  const outDir = tempDir('moa-sparse');
  const result = await convertCheckpoint(readAnyDenseCheckpoint(denseDir), {
    outDir,
    strategy: 'topk',
    k: moa.num_experts,
    epsilon: 0.48,
    dtype: 'f32',
    calibWindows: [],
    calibSource: 'none',
    renormalize: false,
    ...options,
  });
  return { ...result, outDir };
}

function tokens(n: number, seed: number): number[] {
  const rand = seededUniform(seed);
  return Array.from({ length: n }, () => Math.floor(rand() * 256));
}

const ids = tokens(19, 5);

describe('MoA plans', () => {
  test('every attention expert kept (the default): packed exactly, plan ops per §12, plan reference = dense reference', async () => {
    const denseDir = denseFolder(moa, 7);
    const { outDir, plan } = await convert(denseDir, {});
    const loaded = readPlan(outDir);
    const ops = layerOps(plan.layers[0]);
    expect(plan.layers[0].ops.map((op) => op.op).slice(0, 4)).toEqual(['rms_norm', 'attention_router', 'attention_select', 'attention']);
    expect(ops.attnRouter).toEqual({ op: 'attention_router', weight: 'layers.0.attn.router', num_experts: 4 });
    expect(ops.attnSelect).toEqual({ op: 'attention_select', mode: 'all', k: 4, epsilon: 0, k_max: 4, renormalize: false });
    expect(ops.attention.kept).toEqual([0, 1, 2, 3]);
    expect(ops.attention.heads_per_expert).toBe(2);
    expect(plan.strategy.attention).toEqual({ name: 'all', k: null, epsilon: 0 });
    const hd = headDim(moa); // 2
    expect(loaded.header.tensors.get('layers.0.attn.o')!.shape).toEqual([4, moa.hidden_size, 2 * hd]);
    expect(loaded.header.tensors.get('layers.1.attn.router')!.shape).toEqual([4, moa.hidden_size]);

    // Every dense tensor read back from the packed file, bit for bit.
    const source = readSafetensors(path.join(denseDir, 'model.safetensors'));
    const unpacked = planWeights(loaded);
    // (the zero shared-expert gate of a model without shared expert is not packed)
    for (const name of [...source.header.tensors.keys()].filter((n) => !n.includes('shared_expert_gate'))) expect(Array.from(unpacked.get(name))).toEqual(Array.from(source.get(name)));
    // The packed o of layer 1 is expert a's W_o columns [d, N_h·hd] one after the other.
    const o = readSafetensors(loaded.weightsPath).get('layers.1.attn.o');
    const o2 = source.get(denseNames.attnExpertO(1, 2));
    expect(Array.from(o.subarray(2 * o2.length, 3 * o2.length))).toEqual(Array.from(o2));

    const dense = referenceForward(readAnyDenseCheckpoint(denseDir), ids).logits;
    const viaPlan = referenceForward(unpacked, ids, { routing: planRoutingRules(loaded.plan), attentionRouting: planAttentionRules(loaded.plan) }).logits;
    expect(Array.from(viaPlan)).toEqual(Array.from(dense));
  });

  test('top-k and threshold attention experts: the plan reference follows the rule, and differs from dense', async () => {
    const denseDir = denseFolder(moa, 8);
    const dense = referenceForward(readAnyDenseCheckpoint(denseDir), ids);
    for (const attention of [
      { strategy: 'topk' as const, k: 2 },
      { strategy: 'threshold' as const, k: 3, epsilon: 0.9 },
    ]) {
      const { outDir, plan } = await convert(denseDir, { attention });
      const loaded = readPlan(outDir);
      const select = layerOps(plan.layers[1]).attnSelect!;
      expect(select.mode).toBe(attention.strategy);
      expect(select.k_max).toBe(attention.k);
      const rules = planAttentionRules(plan);
      expect(rules[0]).toEqual(attention.strategy === 'topk' ? { mode: 'topk', k: 2, kept: [0, 1, 2, 3] } : { mode: 'threshold', epsilon: 0.9, kMax: 3, kept: [0, 1, 2, 3] });
      const viaPlan = referenceForward(planWeights(loaded), ids, { routing: planRoutingRules(plan), attentionRouting: rules }).logits;
      const want = referenceForward(readAnyDenseCheckpoint(denseDir), ids, { attentionRouting: rules }).logits;
      expect(Array.from(viaPlan)).toEqual(Array.from(want));
      expect(Array.from(viaPlan)).not.toEqual(Array.from(dense.logits));
      // Fewer attention experts per token: fewer active parameters, all of it on the attention side.
      const split = costSplit(plan);
      const all = costSplit((await convert(denseDir, {})).plan);
      expect(split.mlp).toEqual(all.mlp);
      expect(split.attention.params).toBeLessThan(all.attention.params);
      const perExpert = 2 * (2 * hdOf(moa) * moa.hidden_size) + 2 * hdOf(moa); // q rows + o columns + q bias
      expect(all.attention.params - split.attention.params).toBe(moa.num_hidden_layers * (4 - attention.k) * perExpert);
      expect(plan.cost.active_params_per_token).toBe(split.attention.params + split.mlp.params + split.other.params);
    }
  });

  test('calibrated attention experts: threshold sized by its mean count, threshold-topk a per-layer k, statistics in plan.json', async () => {
    const denseDir = denseFolder(moa, 11);
    const calib = [tokens(16, 1), tokens(16, 2), tokens(12, 3)];
    const { plan: threshold, calibration } = await convert(denseDir, { calibWindows: calib, calibSource: 'random bytes', attention: { strategy: 'threshold', epsilon: 0.9, k: 3 } });
    // The report's dense loss is the dense model's (every attention expert too), not the plan's.
    let sum = 0;
    let count = 0;
    for (const window of calib) {
      const l = nextTokenLoss(referenceForward(readAnyDenseCheckpoint(denseDir), window).logits, window, moa.vocab_size);
      sum += l.sum;
      count += l.count;
    }
    expect(calibration!.loss.dense).toBeCloseTo(sum / count, 9);
    expect(calibration!.loss.plan).not.toBeCloseTo(sum / count, 6);
    const stats = threshold.calibration!.attention_layers!;
    expect(stats).toHaveLength(moa.num_hidden_layers);
    // The mean count, counted independently: the reference forward's attention probabilities under the plan's rules.
    const rules = planAttentionRules(threshold);
    const counts = [0, 0];
    let n = 0;
    for (const window of calib) {
      const result = referenceForward(readAnyDenseCheckpoint(denseDir), window, { routing: planRoutingRules(threshold), attentionRouting: rules, collectRouterProbs: true });
      n += window.length;
      result.attentionRouterProbs!.forEach((pa, l) => {
        for (let t = 0; t < window.length; t++) {
          const p = Array.from(pa.subarray(t * 4, (t + 1) * 4));
          const above = p.filter((x) => 4 * x > 0.9).length;
          counts[l] += Math.min(3, Math.max(1, above));
        }
      });
    }
    stats.forEach((layer, l) => {
      expect(layer.mean_selected).toBeCloseTo(counts[l] / n, 9);
      expect(layerOps(threshold.layers[l]).attnSelect!.k).toBe(Math.min(3, Math.max(1, Math.ceil(counts[l] / n - 0.05))));
      expect(layer.expert_load.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    });
    expect(costSplit(threshold).attention.params).toBeLessThan(costSplit((await convert(denseDir, {})).plan).attention.params);

    const { plan: perLayer, outDir } = await convert(denseDir, { calibWindows: calib, calibSource: 'random bytes', attention: { strategy: 'threshold-topk', epsilon: 0.9, k: 3 } });
    perLayer.layers.forEach((layer, l) => {
      const select = layerOps(layer).attnSelect!;
      expect(select.mode).toBe('topk');
      expect(select.k).toBe(select.k_max);
      expect(select.k).toBe(Math.min(3, Math.max(1, Math.ceil(counts[l] / n - 0.05)))); // from the threshold pass
    });
    expect(perLayer.strategy.attention).toEqual({ name: 'threshold-topk', k: null, epsilon: 0.9 });
    readPlan(outDir);
    await expect(convert(denseDir, { attention: { strategy: 'threshold-topk' } })).rejects.toThrow(/^--attention-strategy threshold-topk needs calibration tokens/);
  });

  test('cost: with every expert kept, the MoA plan costs what the plain model of the same shape costs plus the routers', async () => {
    const moaPlan = (await convert(denseFolder(moa, 9), {})).plan;
    const plain: ModelConfig = { ...moa, attention_experts: undefined, heads_per_attention_expert: undefined };
    delete plain.attention_experts;
    delete plain.heads_per_attention_expert;
    const plainPlan = (await convert(denseFolder(plain, 9), {})).plan;
    const routers = moa.num_hidden_layers * 4 * moa.hidden_size;
    expect(moaPlan.cost.total_params).toBe(plainPlan.cost.total_params + routers);
    expect(moaPlan.cost.active_params_per_token).toBe(plainPlan.cost.active_params_per_token + routers);
    expect(moaPlan.cost.dense_active_params_per_token).toBe(plainPlan.cost.dense_active_params_per_token + routers);
    expect(costSplit(plainPlan).attention.params + routers).toBe(costSplit(moaPlan).attention.params);
  });

  test('pruning, top-1: an attention expert no token selects leaves the plan (q rows, q bias, W_o columns) and nothing else changes', async () => {
    const weights = randomDenseWeights(moa, 12);
    neverFourth(weights, moa);
    const denseDir = tempDir('moa-dense');
    writeDenseFolder(denseDir, moa, weights);
    const calib = [tokens(16, 1), tokens(16, 2), tokens(16, 3)];
    const attention = { strategy: 'topk' as const, k: 1 };
    const base = { calibWindows: calib, calibSource: 'random bytes', attention };
    const unpruned = await convert(denseDir, base);
    const pruned = await convert(denseDir, { ...base, pruneBelow: 0.02 });
    pruned.calibration!.layers.forEach((layer, l) => {
      expect(layer.attention!.expert_load[3]).toBe(0);
      expect(Math.min(...layer.attention!.expert_load.slice(0, 3))).toBeGreaterThanOrEqual(0.02); // so only expert 3 goes
      expect(layer.attention!.pruned).toEqual([3]);
      expect(layer.pruned).toEqual([]); // top-k with k = E: every MLP expert serves every token
      const ops = layerOps(pruned.plan.layers[l]);
      expect(ops.attention.kept).toEqual([0, 1, 2]);
      expect(ops.attnSelect).toMatchObject({ mode: 'topk', k: 1, k_max: 1 });
    });
    const loaded = readPlan(pruned.outDir);
    const hd = headDim(moa);
    expect(loaded.header.tensors.get('layers.0.attn.o')!.shape).toEqual([3, moa.hidden_size, 2 * hd]);
    expect(loaded.header.tensors.get('layers.1.attn.qkv')!.shape).toEqual([(3 * 2 + 2 * 2) * hd, moa.hidden_size]);
    const packed = planWeights(loaded);
    expect(() => packed.get(denseNames.attnExpertQ(1, 3))).toThrow('plan: attention expert 3 of layer 1 was pruned (kept: 0, 1, 2)');
    expect(Array.from(packed.get(denseNames.attnExpertO(1, 2)))).toEqual(Array.from(weights.get(denseNames.attnExpertO(1, 2))!)); // ids stay original

    // Expert 3 is never selected, so the pruned plan computes exactly what the unpruned one does, on any tokens.
    const viaPlan = (dir: string) => {
      const l = readPlan(dir);
      return referenceForward(planWeights(l), ids, { routing: planRoutingRules(l.plan), attentionRouting: planAttentionRules(l.plan) }).logits;
    };
    expect(Array.from(viaPlan(pruned.outDir))).toEqual(Array.from(viaPlan(unpruned.outDir)));
    expect(pruned.calibration!.loss.pruned).toBe(pruned.calibration!.loss.plan);
    // Stored parameters: one attention expert (q rows, q bias, W_o columns) fewer per layer; per token, the same.
    const perExpert = 2 * (2 * hd * moa.hidden_size) + 2 * hd;
    expect(unpruned.plan.cost.total_params - pruned.plan.cost.total_params).toBe(moa.num_hidden_layers * perExpert);
    expect(pruned.plan.cost.active_params_per_token).toBe(unpruned.plan.cost.active_params_per_token);
  });

  test('pruning, every attention expert run (`all`): experts rarely above A·pa > ε go; the plan equals the dense model without them', async () => {
    const denseDir = denseFolder(moa, 13);
    const calib = [tokens(16, 4), tokens(16, 5), tokens(16, 6)];
    const epsilon = 1.0;
    const share = 0.4;
    const { plan, calibration, outDir } = await convert(denseDir, { calibWindows: calib, calibSource: 'random bytes', pruneBelow: share, attention: { strategy: 'all', epsilon } });
    // The load pruning reads, counted independently: tokens with A·pa_a > ε (or a the arg-max), from the dense forward
    // (with every attention and MLP expert kept the plan's calibration pass is the dense model's).
    const load = [0, 1].map(() => [0, 0, 0, 0]);
    let n = 0;
    for (const window of calib) {
      const result = referenceForward(readAnyDenseCheckpoint(denseDir), window, { collectRouterProbs: true });
      n += window.length;
      result.attentionRouterProbs!.forEach((pa, l) => {
        for (let t = 0; t < window.length; t++) {
          const p = Array.from(pa.subarray(t * 4, (t + 1) * 4));
          const top = p.indexOf(Math.max(...p));
          p.forEach((x, a) => (load[l][a] += 4 * x > epsilon || a === top ? 1 : 0));
        }
      });
    }
    const kept = load.map((row) => {
      const ids = row.flatMap((c, a) => (c / n >= share ? [a] : []));
      return ids.length ? ids : [row.indexOf(Math.max(...row))];
    });
    expect(kept.some((ids) => ids.length < 4)).toBe(true); // the case is not vacuous
    plan.layers.forEach((layer, l) => {
      calibration!.layers[l].attention!.threshold_load.forEach((x, a) => expect(x).toBeCloseTo(load[l][a] / n, 9));
      expect(layerOps(layer).attention.kept).toEqual(kept[l]);
      expect(layerOps(layer).attnSelect).toMatchObject({ mode: 'all', k: kept[l].length, k_max: kept[l].length });
    });
    // A naive reference: the dense checkpoint with each layer's attention restricted to the kept experts.
    const naive = referenceForward(readAnyDenseCheckpoint(denseDir), ids, { attentionRouting: kept.map((ids) => ({ mode: 'topk' as const, k: ids.length, kept: ids })) }).logits;
    const loaded = readPlan(outDir);
    expect(Array.from(referenceForward(planWeights(loaded), ids, { routing: planRoutingRules(plan), attentionRouting: planAttentionRules(plan) }).logits)).toEqual(Array.from(naive));
    // Fewer attention experts stored and run: both counts drop by the pruned experts' q rows, q bias and W_o columns.
    const all = (await convert(denseDir, {})).plan;
    const perExpert = 2 * (2 * headDim(moa) * moa.hidden_size) + 2 * headDim(moa);
    const prunedCount = kept.reduce((sum, ids) => sum + 4 - ids.length, 0);
    expect(all.cost.total_params - plan.cost.total_params).toBe(prunedCount * perExpert);
    expect(all.cost.active_params_per_token - plan.cost.active_params_per_token).toBe(prunedCount * perExpert);
    expect(costSplit(all).attention.params - costSplit(plan).attention.params).toBe(prunedCount * perExpert);
    expect(calibration!.loss.dense).not.toBe(calibration!.loss.pruned);
  });

  test('bad attention flags and plans are refused with one line', async () => {
    const denseDir = denseFolder(moa, 10);
    await expect(convert(denseDir, { attention: { strategy: 'topk', k: 5 } })).rejects.toThrow(/^--attention-k must be an integer in 1\.\.4/);
    await expect(convert(denseDir, { attention: { strategy: 'threshold', epsilon: 4 } })).rejects.toThrow(/^--attention-epsilon must be a number in 0\.\.4/);
    await expect(convert(denseFolder(tinyConfig, 1), { attention: { strategy: 'topk', k: 1 } })).rejects.toThrow(/has no attention experts/);

    const { outDir } = await convert(denseDir, {});
    const planPath = path.join(outDir, 'plan.json');
    const original = fs.readFileSync(planPath, 'utf8');
    const edit = (f: (p: { layers: { ops: Record<string, unknown>[] }[] }) => void) => {
      const p = JSON.parse(original);
      f(p);
      fs.writeFileSync(planPath, JSON.stringify(p));
    };
    edit((p) => (p.layers[0].ops[3].kept = [0, 2, 1, 3]));
    expect(() => readPlan(outDir)).toThrow('plan.json: layers[0].ops[3].kept[2]: expected attention expert ids in 0..3, unique and increasing, got 1');
    edit((p) => (p.layers[1].ops[2].k = 2));
    expect(() => readPlan(outDir)).toThrow('plan.json: layers[1].ops[2].k: expected k = k_max = 4 (mode all: every kept attention expert), got 2');
    edit((p) => p.layers[0].ops.splice(1, 2));
    expect(() => readPlan(outDir)).toThrow(/layers\[0\]\.ops: expected ops in the order \[rms_norm, attention_router, attention_select, attention,/);
    // A packed tensor of the wrong shape (one expert's o missing) is named by the weights check.
    edit((p) => {
      p.layers[0].ops[3].kept = [0, 1, 2];
      Object.assign(p.layers[0].ops[2], { k: 3, k_max: 3 });
    });
    expect(() => readPlan(outDir)).toThrow(/tensor "layers\.0\.attn\.o": expected shape \[3, 16, 4\], got \[4, 16, 4\]/);
  });
});

/**
 * Sets every layer's attention router rows to [v, −v, u, u/2]: expert 3's logit u·x/2 is below expert 2's when
 * u·x > 0 and otherwise at most 0 ≤ max(v·x, −v·x), so it is never the arg-max and top-1 never selects it.
 */
function neverFourth(weights: Map<string, Float32Array>, config: ModelConfig): void {
  const d = config.hidden_size;
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const router = weights.get(denseNames.attnRouter(l))!; // [A, d]
    for (let i = 0; i < d; i++) {
      router[d + i] = -router[i];
      router[3 * d + i] = 0.5 * router[2 * d + i];
    }
  }
}

function hdOf(config: ModelConfig): number {
  return headDim(config);
}
