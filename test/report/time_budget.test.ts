import type { ModelConfig } from '../../src/model/config';
import { PAPER_SHAPES, paperTopK } from '../../src/report/paper_shapes';
import {
  CalibrationSample,
  chooseLayers,
  chooseWork,
  CostRates,
  fitRates,
  priorRates,
  SAFETY,
  shapePlanView,
} from '../../src/report/time_budget';
import type { PlanView } from '../../src/report/plan_view';
import { etaMs, formatDuration } from '../../src/report/progress';

/**
 * The budget's choice logic on the DS-MoE-1B shape, against an independent estimate: per-call times written out
 * here from the shape's arithmetic (weights of the fixed part and of each expert, a balanced top-k router's
 * expected distinct experts, the dense FLOPs less the experts not run), not through the module's own cost functions.
 */

const paper = PAPER_SHAPES['ds-moe-1b'];
const K = paperTopK(paper.activeShare, paper.config.num_experts); // 13 of 32
const configAt = (layers: number): ModelConfig => ({ ...paper.config, num_hidden_layers: layers, num_experts_per_tok: K });
const planAt = (layers: number): PlanView => shapePlanView(configAt(layers), 'bf16', K);

/** Call time from first principles: bytes = fixed + distinct experts × expert bytes, FLOPs less the experts not run. */
function naiveCallMs(layers: number, rates: CostRates, mode: 'dense' | 'sparse', tokens: number): number {
  const c = configAt(layers);
  const d = c.hidden_size;
  const E = c.num_experts;
  const expertParams = 3 * d * c.moe_intermediate_size;
  const plan = planAt(layers);
  const fixedBytes = plan.cost.dense_weight_bytes_per_token - layers * E * expertParams * 2;
  const q = mode === 'dense' ? 1 : K / E;
  const distinct = E * (1 - Math.pow(1 - q, tokens));
  const bytes = fixedBytes + layers * distinct * expertParams * 2;
  // FLOPs per token as src/plan/cost.ts counts them (tested there): matrices, router and LM head, 2 per multiply-add.
  const flopsPerToken = mode === 'dense' ? plan.cost.dense_flops_per_token : plan.cost.dense_flops_per_token - layers * (E - K) * 2 * expertParams;
  return bytes * rates.msPerByte + flopsPerToken * tokens * rates.msPerFlop;
}

function naiveThroughputMs(layers: number, rates: CostRates, batches: number[], repeats: number, promptLen: number, decodeSteps: number): number {
  let total = 0;
  for (let round = 0; round <= repeats; round++) {
    for (const batch of batches) {
      for (const mode of ['dense', 'sparse'] as const) {
        total += naiveCallMs(layers, rates, mode, batch * promptLen);
        for (let step = 0; step < decodeSteps; step++) total += naiveCallMs(layers, rates, mode, batch);
      }
    }
  }
  return total;
}

// A 2-core machine like the development one: 15 GB/s triad, 100 GFLOP/s FMA peak.
const rates = priorRates(15, 100);
const shape = { promptLen: 16, decodeSteps: 8 };
const candidates = [1, 4, 16, 64];

describe('cost rates', () => {
  test('prior rates are the measured limits at the assumed efficiencies', () => {
    expect(1 / (rates.msPerByte * 1e6)).toBeCloseTo(7.5, 10); // GB/s
    expect(1 / (rates.msPerFlop * 1e6)).toBeCloseTo(25, 10); // GFLOP/s
  });

  test('fitRates recovers the rates that produced the calibration calls', () => {
    const truth: CostRates = { msPerByte: 1 / 4e6, msPerFlop: 1 / 30e6 };
    const samples: CalibrationSample[] = [];
    for (const mode of ['dense', 'sparse'] as const) {
      samples.push({ mode, tokens: 16, ms: naiveCallMs(24, truth, mode, 16) });
      samples.push({ mode, tokens: 1, ms: naiveCallMs(24, truth, mode, 1) }, { mode, tokens: 1, ms: naiveCallMs(24, truth, mode, 1) });
    }
    const fitted = fitRates(planAt(24), samples);
    expect(fitted.msPerByte / truth.msPerByte).toBeCloseTo(1, 6);
    expect(fitted.msPerFlop / truth.msPerFlop).toBeCloseTo(1, 6);
  });

  test('fitRates never returns a negative rate (calls that only fit a bandwidth-bound machine)', () => {
    const truth: CostRates = { msPerByte: 1 / 5e6, msPerFlop: 0 };
    // Noise that would make an unconstrained fit's FLOP rate negative: the prefill is faster than its bytes predict.
    const samples: CalibrationSample[] = [
      { mode: 'dense', tokens: 1, ms: naiveCallMs(4, truth, 'dense', 1) },
      { mode: 'dense', tokens: 16, ms: 0.9 * naiveCallMs(4, truth, 'dense', 16) },
    ];
    const fitted = fitRates(planAt(4), samples);
    expect(fitted.msPerByte).toBeGreaterThan(0);
    expect(fitted.msPerFlop).toBeGreaterThanOrEqual(0);
  });
});

describe('chooseWork', () => {
  const plan = planAt(24);
  const least = naiveThroughputMs(24, rates, [1], 1, shape.promptLen, shape.decodeSteps);
  const all = naiveThroughputMs(24, rates, candidates, 3, shape.promptLen, shape.decodeSteps);

  test.each([1.05, 2, 5, 20, 60, 200])('within %p × the least work, the choice fits and nothing more would', (factor) => {
    const availableMs = (factor * least) / SAFETY;
    const choice = chooseWork({ plan, rates, shape, availableMs, candidateBatches: candidates, maxRepeats: 3 });
    const estimate = naiveThroughputMs(24, rates, choice.batches, choice.repeats, shape.promptLen, shape.decodeSteps);
    expect(choice.fits).toBe(true);
    expect(choice.estimatedMs / estimate).toBeCloseTo(1, 9);
    expect(estimate).toBeLessThanOrEqual(SAFETY * availableMs);
    expect(choice.batches[0]).toBe(1);
    // Maximal: any further batch, or one more repeat, would overrun.
    for (const batch of candidates.filter((b) => !choice.batches.includes(b))) {
      expect(naiveThroughputMs(24, rates, [...choice.batches, batch], choice.repeats, shape.promptLen, shape.decodeSteps)).toBeGreaterThan(SAFETY * availableMs);
    }
    if (choice.repeats < 3) {
      expect(naiveThroughputMs(24, rates, choice.batches, choice.repeats + 1, shape.promptLen, shape.decodeSteps)).toBeGreaterThan(SAFETY * availableMs);
    }
  });

  test('a budget below the least work runs the least work and says it does not fit', () => {
    const choice = chooseWork({ plan, rates, shape, availableMs: least / 2, candidateBatches: candidates, maxRepeats: 3 });
    expect(choice).toMatchObject({ batches: [1], repeats: 1, fits: false });
  });

  test('a large budget runs every batch at the most repeats', () => {
    const choice = chooseWork({ plan, rates, shape, availableMs: (2 * all) / SAFETY, candidateBatches: candidates, maxRepeats: 3 });
    expect(choice).toMatchObject({ batches: candidates, repeats: 3, fits: true });
  });

  test('given batches and repeats are kept; only the rest is chosen', () => {
    const fixed = chooseWork({ plan, rates, shape, availableMs: least, candidateBatches: candidates, maxRepeats: 3, fixedBatches: [4, 16], fixedRepeats: 2 });
    expect(fixed).toMatchObject({ batches: [4, 16], repeats: 2 });
    const repeatsOnly = chooseWork({ plan, rates, shape, availableMs: (2 * all) / SAFETY, candidateBatches: candidates, maxRepeats: 3, fixedBatches: [1] });
    expect(repeatsOnly).toMatchObject({ batches: [1], repeats: 3 });
  });
});

describe('chooseLayers', () => {
  const leastWork = { batches: [1], repeats: 2 };
  // Writing the plan at 50 MB/s: every layer adds its bytes.
  const setupMs = (layers: number) => (planAt(layers).cost.total_params * 2) / 50e3;
  const estimate = (layers: number) => setupMs(layers) + naiveThroughputMs(layers, rates, leastWork.batches, leastWork.repeats, shape.promptLen, shape.decodeSteps);

  test.each([3, 10, 23])('the deepest model that fits: budget for %p layers', (target) => {
    const availableMs = (estimate(target) * 1.0001) / SAFETY;
    const choice = chooseLayers({ fullLayers: 24, setupMs, planAt, rates, shape, availableMs, leastWork });
    expect(choice.layers).toBe(target);
    expect(choice.fits).toBe(true);
    expect(estimate(choice.layers)).toBeLessThanOrEqual(SAFETY * availableMs);
    expect(estimate(choice.layers + 1)).toBeGreaterThan(SAFETY * availableMs);
  });

  test('all layers when they fit, one (and not fitting) when nothing does', () => {
    expect(chooseLayers({ fullLayers: 24, setupMs, planAt, rates, shape, availableMs: (2 * estimate(24)) / SAFETY, leastWork })).toMatchObject({ layers: 24, fits: true });
    expect(chooseLayers({ fullLayers: 24, setupMs, planAt, rates, shape, availableMs: estimate(1) / 2, leastWork })).toMatchObject({ layers: 1, fits: false });
  });
});

describe('progress ETA', () => {
  test('remaining weight at the pace so far', () => {
    expect(etaMs(30_000, 1, 4)).toBe(90_000);
    expect(etaMs(10_000, 0, 4)).toBeNull();
    expect(etaMs(10_000, 4, 4)).toBe(0);
  });

  test('durations read as h/m/s', () => {
    expect(formatDuration(3_723_000)).toBe('1h02m');
    expect(formatDuration(245_000)).toBe('4m05s');
    expect(formatDuration(12_400)).toBe('12s');
    expect(formatDuration(null)).toBe('?');
  });
});
