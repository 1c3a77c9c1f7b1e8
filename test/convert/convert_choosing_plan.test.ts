import * as fs from 'fs';
import * as path from 'path';
import { convertChoosingPlan } from '../../src/convert/convert_choosing_plan';
import type { CalibrationReport } from '../../src/convert/convert_checkpoint';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { readPlan } from '../../src/plan/read_plan';
import { layerOps, type PlanChoicePoint } from '../../src/plan/plan_format';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import { planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { randomDenseWeights, removeTempDirs, seededUniform, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';

/**
 * End to end on the tiny test model: the converter scores the sweep on the native runtime, picks a plan, writes it;
 * the chosen plan's calibration loss, recomputed with the reference forward (convert's calibration passes and, here,
 * directly), is within the bound of dense, and nothing cheaper in the recorded sweep was.
 */

afterAll(removeTempDirs);

function windows(count: number, length: number, seed: number): number[][] {
  const rand = seededUniform(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(rand() * 256)));
}

/** Mean next-token loss of the plan in `dir` over `ws`, by the JS reference forward with the plan's routing. */
function referenceLoss(dir: string, ws: number[][]): number {
  const loaded = readPlan(dir);
  const weights = planWeights(loaded);
  let nats = 0;
  let count = 0;
  for (const w of ws) {
    const { logits } = referenceForward(weights, w, { routing: planRoutingRules(loaded.plan) });
    const { sum, count: n } = nextTokenLoss(logits, w, loaded.plan.config.vocab_size);
    nats += sum;
    count += n;
  }
  return nats / count;
}

/** Runtime and reference forward agree to f32 rounding; the bound is checked with this much slack. */
const AGREEMENT = 1e-5;

describe('convert chooses the plan', () => {
  const calib = windows(6, 24, 5);
  const denseDir = tempDir('dense');
  writeDenseFolder(denseDir, tinyConfig, randomDenseWeights(tinyConfig, 11));
  const chosenAt = new Map<number, PlanChoicePoint>();

  test.each([0, 0.001, 0.005])('max loss increase %p: the chosen plan is the cheapest within the bound', async (bound) => {
    const outDir = tempDir('sparse');
    const dense = readAnyDenseCheckpoint(denseDir);
    const result = await convertChoosingPlan(dense, {
      outDir, dtype: 'f32', calibWindows: calib, calibSource: 'random bytes', renormalize: false, threads: 1,
      maxLossIncrease: bound, epsilons: [0.1, 0.3, 0.6, 1.0, 2.0],
    });
    const { plan } = readPlan(outDir);
    const choice = plan.choice!;
    chosenAt.set(bound, choice.chosen);
    expect(choice).toBeDefined();
    expect(choice.chosen).toEqual(result.choice.chosen);
    expect(choice.max_loss_increase).toBe(bound);
    expect(choice.loss_bound).toBeCloseTo(choice.dense_loss * (1 + bound), 12);
    // top-k for every k, then threshold at each ε, then threshold-topk vectors that are not uniform
    expect(choice.sweep.filter((p) => p.strategy === 'topk').map((p) => p.k)).toEqual([1, 2, 3, 4]);
    expect(choice.sweep.filter((p) => p.strategy === 'threshold')).toHaveLength(5);
    for (const p of choice.sweep) {
      if (p.active_params < choice.chosen.active_params) expect(p.loss).toBeGreaterThan(choice.loss_bound);
    }
    // The plan written is the routing chosen.
    const c = choice.chosen;
    expect(plan.strategy.name).toBe(c.strategy);
    const selects = plan.layers.map((layer) => layerOps(layer).select);
    if (c.strategy === 'topk') expect(selects.map((s) => s.k)).toEqual([c.k, c.k]);
    if (c.strategy === 'threshold-topk') expect(selects.map((s) => s.k)).toEqual(c.layer_k);
    if (c.strategy === 'threshold') for (const s of selects) expect(s).toMatchObject({ mode: 'threshold', epsilon: c.epsilon });
    // Quality by the reference forward, independent of the runtime that scored the sweep.
    const calibration = JSON.parse(fs.readFileSync(path.join(outDir, 'calibration.json'), 'utf8')) as CalibrationReport;
    expect(calibration.loss.dense!).toBeCloseTo(choice.dense_loss, 4);
    expect(calibration.loss.plan!).toBeLessThanOrEqual(calibration.loss.dense! * (1 + bound) + AGREEMENT);
    const reference = referenceLoss(outDir, calib);
    expect(reference).toBeCloseTo(c.loss, 4);
    expect(reference).toBeLessThanOrEqual(choice.loss_bound + AGREEMENT);
  });

  test('on this model the bound decides: a dynamic-k threshold plan at 0 and 0.1%, top-1 at 0.5%', () => {
    // Fixed weights and tokens, so fixed outcomes: with a looser bound, fewer experts.
    expect(chosenAt.get(0)!.strategy).toBe('threshold');
    expect(chosenAt.get(0.001)!.strategy).toBe('threshold');
    expect(chosenAt.get(0.005)).toMatchObject({ strategy: 'topk', k: 1 });
    expect(chosenAt.get(0.005)!.active_params).toBeLessThan(chosenAt.get(0)!.active_params);
  });

  test('--max-perplexity-increase replaces the loss bound (dense + ln(1 + share)); a bad one fails before any work', async () => {
    const dense = readAnyDenseCheckpoint(denseDir);
    const base = { dtype: 'f32' as const, calibWindows: calib, calibSource: 'random bytes', renormalize: false, threads: 1, maxLossIncrease: 0.5, epsilons: [0.3, 1.0] };
    const outDir = tempDir('sparse');
    const { choice } = await convertChoosingPlan(dense, { ...base, outDir, maxPerplexityIncrease: 0.005 });
    expect(choice.max_perplexity_increase).toBe(0.005);
    expect(choice.loss_bound).toBeCloseTo(choice.dense_loss + Math.log(1.005), 12); // not dense × 1.5
    expect(choice.chosen.loss).toBeLessThanOrEqual(choice.loss_bound);
    expect(readPlan(outDir).plan.choice!.max_perplexity_increase).toBe(0.005);
    const untouched = tempDir('never-written');
    await expect(convertChoosingPlan(dense, { ...base, outDir: untouched, maxPerplexityIncrease: Number.NaN })).rejects.toThrow(
      '--max-perplexity-increase must be a finite share ≥ 0 (0.005 = 0.5%), got NaN',
    );
    expect(fs.readdirSync(untouched)).toEqual([]);
  });
});
