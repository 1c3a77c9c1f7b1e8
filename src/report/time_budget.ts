import type { ModelConfig } from '../model/config';
import { planCost } from '../plan/cost';
import type { PlanDtype } from '../plan/plan_format';
import type { EvaluationContext, ReportMode } from './engine';
import { runOnce, type ThroughputSettings } from './throughput';
import type { BudgetReport } from './report_json';
import { PlanView, planTopK } from './plan_view';
import { denseSelection, uniformSelection, weightBytesPerCall } from './cost_model';

/**
 * `dsmoe report --budget MIN`: which layers, batch sizes and repeats fit in a time budget. A call's time is modelled
 * as (weight bytes it reads) × msPerByte + (FLOPs it does) × msPerFlop, with the bytes from the roofline's cost model
 * (fixed weights + expected distinct experts) and the FLOPs from the plan's per-token cost. The two rates start from
 * the machine's measured bandwidth and FMA peak at assumed efficiencies (to size the random plan's depth before it
 * exists), and are then fitted to short calibration runs of the real plan (to size batches and repeats).
 *
 * The choice fills only SAFETY of what is left, because a shared machine can slow down between calibration and the
 * timed runs; an estimate that does not fit even the least work is reported, and the least work is done.
 */

/** Share of the remaining budget the chosen work is sized to. */
export const SAFETY = 0.8;
/** Efficiencies assumed before anything of the plan has run: bandwidth-bound decode, compute-bound prefill. */
export const PRIOR_BANDWIDTH_EFFICIENCY = 0.5;
export const PRIOR_COMPUTE_EFFICIENCY = 0.25;

export interface CostRates {
  msPerByte: number;
  msPerFlop: number;
}

/** Prior rates from the measured machine: GB/s and GFLOP/s at the assumed efficiencies. */
export function priorRates(bandwidthGBs: number, peakGflops: number): CostRates {
  return {
    msPerByte: 1 / (bandwidthGBs * PRIOR_BANDWIDTH_EFFICIENCY * 1e6),
    msPerFlop: 1 / (peakGflops * PRIOR_COMPUTE_EFFICIENCY * 1e6),
  };
}

/** Weight bytes and FLOPs of one evaluate call of `tokens` tokens in a mode (balanced router for sparse). */
export function callWork(plan: PlanView, mode: ReportMode, tokens: number): { bytes: number; flops: number } {
  const selection = mode === 'dense' ? denseSelection(plan) : uniformSelection(plan, planTopK(plan));
  const flopsPerToken = mode === 'dense' ? plan.cost.dense_flops_per_token : plan.cost.active_flops_per_token;
  return { bytes: weightBytesPerCall(plan, selection, tokens), flops: tokens * flopsPerToken };
}

export function callMs(plan: PlanView, rates: CostRates, mode: ReportMode, tokens: number): number {
  const work = callWork(plan, mode, tokens);
  return work.bytes * rates.msPerByte + work.flops * rates.msPerFlop;
}

export interface RunShape {
  promptLen: number;
  decodeSteps: number;
}

/** One timed unit of the throughput loop: a prefill of batch × promptLen tokens and decodeSteps calls of batch. */
export function runMs(plan: PlanView, rates: CostRates, mode: ReportMode, batch: number, shape: RunShape): number {
  return callMs(plan, rates, mode, batch * shape.promptLen) + shape.decodeSteps * callMs(plan, rates, mode, batch);
}

/** The whole throughput loop: one warm-up round and `repeats` timed rounds over every batch, both modes. */
export function throughputMs(plan: PlanView, rates: CostRates, work: { batches: number[]; repeats: number }, shape: RunShape): number {
  let round = 0;
  for (const batch of work.batches) round += runMs(plan, rates, 'dense', batch, shape) + runMs(plan, rates, 'sparse', batch, shape);
  return (work.repeats + 1) * round;
}

/** A calibration measurement: one call of `tokens` tokens in `mode` took `ms`. */
export interface CalibrationSample {
  mode: ReportMode;
  tokens: number;
  ms: number;
}

/**
 * Rates that best explain the calibration calls: non-negative least squares on ms ≈ bytes·a + flops·b (two unknowns,
 * so the constrained optimum is the unconstrained one or one of the two single-rate fits).
 */
export function fitRates(plan: PlanView, samples: readonly CalibrationSample[]): CostRates {
  if (samples.length === 0) throw new Error('fitRates: no calibration samples');
  const rows = samples.map((s) => ({ ...callWork(plan, s.mode, s.tokens), ms: s.ms }));
  let bb = 0, bf = 0, ff = 0, bt = 0, ft = 0;
  for (const r of rows) {
    bb += r.bytes * r.bytes;
    bf += r.bytes * r.flops;
    ff += r.flops * r.flops;
    bt += r.bytes * r.ms;
    ft += r.flops * r.ms;
  }
  const residual = (rates: CostRates) => rows.reduce((sum, r) => sum + (r.bytes * rates.msPerByte + r.flops * rates.msPerFlop - r.ms) ** 2, 0);
  const candidates: CostRates[] = [
    { msPerByte: bb > 0 ? Math.max(0, bt / bb) : 0, msPerFlop: 0 },
    { msPerByte: 0, msPerFlop: ff > 0 ? Math.max(0, ft / ff) : 0 },
  ];
  const det = bb * ff - bf * bf;
  if (det > 1e-12 * bb * ff) {
    const a = (bt * ff - ft * bf) / det;
    const b = (ft * bb - bt * bf) / det;
    if (a >= 0 && b >= 0) candidates.push({ msPerByte: a, msPerFlop: b });
  }
  return candidates.reduce((best, c) => (residual(c) < residual(best) ? c : best));
}

/** A PlanView of a random-init top-k plan with every expert kept, for sizing before the plan is written. */
export function shapePlanView(config: ModelConfig, dtype: PlanDtype, k: number): PlanView {
  const L = config.num_hidden_layers;
  const E = config.num_experts;
  return {
    config,
    dtype,
    strategy: { name: 'topk', k },
    layers: Array.from({ length: L }, (_, index) => ({ index, ops: [{ op: 'select', mode: 'topk', k }, { op: 'experts', kept: Array.from({ length: E }, (_, e) => e) }] })),
    calibration: null,
    cost: planCost(config, dtype, Array(L).fill(E), Array(L).fill(k)),
  };
}

export interface WorkChoice {
  batches: number[];
  repeats: number;
  estimatedMs: number;
  /** False when even the least work (batch 1, one repeat) is estimated to overrun the budget. */
  fits: boolean;
}

export interface WorkRequest {
  plan: PlanView;
  rates: CostRates;
  shape: RunShape;
  /** Milliseconds left for the throughput loop. */
  availableMs: number;
  /** Batch sizes to choose from, in the order they are added (the first is always run). */
  candidateBatches: number[];
  /** Most timed repeats. */
  maxRepeats: number;
  /** Given by the user: not chosen. */
  fixedBatches?: number[];
  fixedRepeats?: number;
}

/**
 * Batches and repeats for the throughput loop within SAFETY × availableMs. Upgrades are tried in order of what the
 * report needs most: a second repeat (a median of paired ratios), then each further batch size, then the remaining
 * repeats; an upgrade that does not fit is skipped and the next one tried.
 */
export function chooseWork(request: WorkRequest): WorkChoice {
  const limit = SAFETY * request.availableMs;
  const cost = (batches: number[], repeats: number) => throughputMs(request.plan, request.rates, { batches, repeats }, request.shape);
  let batches = request.fixedBatches ? [...request.fixedBatches] : request.candidateBatches.slice(0, 1);
  let repeats = request.fixedRepeats ?? 1;
  const fits = cost(batches, repeats) <= limit;
  const upgrades: (() => { batches: number[]; repeats: number })[] = [];
  if (request.fixedRepeats === undefined) upgrades.push(() => ({ batches, repeats: Math.max(repeats, Math.min(2, request.maxRepeats)) }));
  if (!request.fixedBatches) {
    for (const batch of request.candidateBatches.slice(1)) upgrades.push(() => ({ batches: [...batches, batch], repeats }));
  }
  if (request.fixedRepeats === undefined) {
    for (let r = 3; r <= request.maxRepeats; r++) upgrades.push(() => ({ batches, repeats: Math.max(repeats, r) }));
  }
  if (fits) {
    for (const upgrade of upgrades) {
      const next = upgrade();
      if (cost(next.batches, next.repeats) <= limit) ({ batches, repeats } = next);
    }
  }
  return { batches, repeats, estimatedMs: cost(batches, repeats), fits };
}

export interface LayerRequest {
  fullLayers: number;
  /** Estimated ms of everything besides the throughput loop at a depth: writing the plan, calibration. */
  setupMs: (layers: number) => number;
  /** The plan at a depth, for the throughput estimate. */
  planAt: (layers: number) => PlanView;
  rates: CostRates;
  shape: RunShape;
  availableMs: number;
  /** The least throughput work a depth must leave room for. */
  leastWork: { batches: number[]; repeats: number };
}

/** The deepest model (≤ fullLayers, ≥ 1) whose setup and least throughput work fit SAFETY × availableMs. */
export function chooseLayers(request: LayerRequest): { layers: number; estimatedMs: number; fits: boolean } {
  const estimate = (layers: number) =>
    request.setupMs(layers) + throughputMs(request.planAt(layers), request.rates, request.leastWork, request.shape);
  const limit = SAFETY * request.availableMs;
  for (let layers = request.fullLayers; layers >= 1; layers--) {
    const ms = estimate(layers);
    if (ms <= limit) return { layers, estimatedMs: ms, fits: true };
  }
  return { layers: 1, estimatedMs: estimate(1), fits: false };
}

/**
 * Calibration on the opened plan: batch 1, both modes, one untimed round (faults the weights in) and one timed
 * round of a prefill and `decodeSteps` decode calls, then the rates fitted to those calls.
 */
export async function calibrateRates(
  context: EvaluationContext,
  plan: PlanView,
  settings: ThroughputSettings,
): Promise<{ rates: CostRates; samples: CalibrationSample[] }> {
  const samples: CalibrationSample[] = [];
  for (const timed of [false, true]) {
    for (const mode of ['dense', 'sparse'] as const) {
      const times = await runOnce(context, mode, 1, settings);
      if (!timed) continue;
      samples.push({ mode, tokens: settings.promptLen, ms: times.prefillMs });
      for (const ms of times.decodeMs) samples.push({ mode, tokens: 1, ms });
    }
  }
  return { rates: fitRates(plan, samples), samples };
}

/** Effective bandwidth (GB/s) and compute (GFLOP/s) of fitted rates, for the report; null where a rate is 0. */
export function ratesAsThroughput(rates: CostRates): { bandwidth_gbs: number | null; gflops: number | null } {
  return {
    bandwidth_gbs: rates.msPerByte > 0 ? 1 / (rates.msPerByte * 1e6) : null,
    gflops: rates.msPerFlop > 0 ? 1 / (rates.msPerFlop * 1e6) : null,
  };
}

/** Decode calls per mode in the budget's calibration round. */
const CALIBRATION_DECODE_STEPS = 2;

/** `--budget`: batches and repeats are chosen after a calibration round on the opened plan. */
export interface RunBudget {
  minutes: number;
  /** Date.now() when the command started: the budget counts everything, plan writing included. */
  startedAt: number;
  candidateBatches: number[];
  maxRepeats: number;
  fixedBatches?: number[];
  fixedRepeats?: number;
  layers: BudgetReport['layers'];
  /** False when the layer choice found no depth whose setup and least work fit. */
  setupFits: boolean;
  /** Estimated time of the PyTorch peer, when it runs. */
  peerReserveMs: number;
}

/**
 * Batches and repeats for an opened plan: a calibration round, rates fitted to it, and chooseWork within what is
 * left before the deadline less `reserve` (bandwidth re-measure, peer, files, rows per expert dtype; in ms, or
 * computed from the fitted rates). Returns the record for report.json,
 * a one-line summary, and the estimated milliseconds still ahead (for the progress ETA).
 */
export async function sizeToBudget(
  context: EvaluationContext,
  plan: PlanView,
  settings: ThroughputSettings,
  budget: RunBudget,
  reserve: number | ((rates: CostRates) => number),
): Promise<{ rates: CostRates; report: BudgetReport; summary: string; remainingMs: number }> {
  const calibration = await calibrateRates(context, plan, { ...settings, decodeSteps: CALIBRATION_DECODE_STEPS });
  const rates = calibration.rates;
  // Work after the throughput loop whose time depends on the fitted rates (the rows per expert dtype) is reserved too.
  const reserveMs = typeof reserve === 'number' ? reserve : reserve(rates);
  const deadline = budget.startedAt + budget.minutes * 60_000;
  const choice = chooseWork({
    plan, rates, shape: settings, availableMs: deadline - Date.now() - reserveMs,
    candidateBatches: budget.candidateBatches, maxRepeats: budget.maxRepeats,
    fixedBatches: budget.fixedBatches, fixedRepeats: budget.fixedRepeats,
  });
  const effective = ratesAsThroughput(rates);
  const report: BudgetReport = {
    minutes: budget.minutes,
    estimated_ms: Date.now() - budget.startedAt + choice.estimatedMs + reserveMs,
    elapsed_ms: 0,
    fits: choice.fits && budget.setupFits,
    layers: budget.layers,
    batches: { chosen: choice.batches, given: budget.fixedBatches !== undefined },
    repeats: { chosen: choice.repeats, given: budget.fixedRepeats !== undefined },
    calibration: { calls: calibration.samples.length, effective_bandwidth_gbs: effective.bandwidth_gbs, effective_gflops: effective.gflops },
  };
  const rate = (value: number | null) => (value === null ? '–' : value.toFixed(1));
  const summary =
    `budget ${budget.minutes} min: batches ${choice.batches.join(',')}, ${choice.repeats} repeat${choice.repeats === 1 ? '' : 's'}` +
    `${budget.layers ? `, ${budget.layers.chosen} of ${budget.layers.full} layers` : ''}; estimated total ${(report.estimated_ms / 60_000).toFixed(1)} min` +
    ` (calibration: ${rate(effective.bandwidth_gbs)} GB/s of weights, ${rate(effective.gflops)} GFLOP/s)` +
    (report.fits ? '' : '; even the least work is estimated to overrun the budget');
  return { rates, report, summary, remainingMs: choice.estimatedMs + reserveMs };
}
