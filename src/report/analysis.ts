import { parameterCounts } from '../model/config';
import type { ReportMode } from './engine';
import type { PlanView } from './plan_view';
import type { ThroughputRow, ThroughputSettings } from './throughput';
import { speedupAt } from './throughput';
import type { MachineReport } from './machine';
import type { RooflinePoint } from './charts/roofline_chart';
import { denseSelection, idealSpeedup, weightBytesPerCall } from './cost_model';
import { costSplit, denseCostSplit, type CostSplit } from '../plan/cost';

/**
 * Turns timings into the figures the report states: speedups (measured vs ideal), the share of the measured memory
 * bandwidth a batch-1 decode achieves, and the share of the FMA peak the largest batch achieves.
 *
 * Accounting: FLOPs are the plan's weight FLOPs per token (2 per multiply-add) plus attention over the context
 * (`attention_flops_per_context_token` × positions attended); bytes are the weights a call reads, each expert once
 * per call however many of the call's tokens use it (expected distinct experts from the selection probabilities).
 * KV-cache traffic is not counted as weight bytes: at the report's short contexts it is small next to the weights.
 */

export interface ModeCost {
  total_params: number;
  active_params_per_token: number;
  flops_per_token: number;
  weight_bytes_per_token: number;
  /** The per-token figures split into attention (MoA: its attention experts), MLP (routed and shared experts) and the rest. */
  split: CostSplit;
}

export interface BandwidthFigure {
  mode: ReportMode;
  batch: number;
  weight_bytes_per_token: number;
  achieved_gbs: number;
  fraction_of_measured: number;
}

export interface ComputeFigure {
  mode: ReportMode;
  phase: 'prefill' | 'decode';
  batch: number;
  achieved_gflops: number;
  fraction_of_peak: number;
}

export interface SpeedupFigure {
  phase: 'prefill' | 'decode';
  batch: number;
  speedup: number;
}

export interface Analysis {
  per_mode: Record<ReportMode, ModeCost>;
  ideal_speedup: number;
  measured_speedup: number;
  speedup_batch: number;
  speedup_efficiency: number; // measured ÷ ideal
  speedups: SpeedupFigure[];
  bandwidth: BandwidthFigure[];
  compute: ComputeFigure[];
  roofline: (RooflinePoint & { flops_per_call: number; bytes_per_call: number })[];
}

export function modeCosts(plan: PlanView): Record<ReportMode, ModeCost> {
  return {
    dense: {
      total_params: parameterCounts(plan.config).total,
      active_params_per_token: plan.cost.dense_active_params_per_token,
      flops_per_token: plan.cost.dense_flops_per_token,
      weight_bytes_per_token: plan.cost.dense_weight_bytes_per_token,
      split: denseCostSplit(plan),
    },
    sparse: {
      total_params: plan.cost.total_params,
      active_params_per_token: plan.cost.active_params_per_token,
      flops_per_token: plan.cost.active_flops_per_token,
      weight_bytes_per_token: plan.cost.active_weight_bytes_per_token,
      split: costSplit(plan),
    },
  };
}

/** Positions attended by one slot's tokens in a call: prefill attends 1..T, decode step s attends T+s+1. */
export function attendedPositions(phase: 'prefill' | 'decode', settings: Pick<ThroughputSettings, 'promptLen' | 'decodeSteps'>): number {
  const T = settings.promptLen;
  if (phase === 'prefill') return (T * (T + 1)) / 2;
  return T + (settings.decodeSteps + 1) / 2; // mean over the decode steps
}

export function analyse(
  plan: PlanView,
  machine: Pick<MachineReport, 'memory_bandwidth_gbs' | 'peak_gflops'>,
  rows: readonly ThroughputRow[],
  settings: Pick<ThroughputSettings, 'promptLen' | 'decodeSteps' | 'batches'>,
  sparseSelection: readonly (readonly number[])[],
): Analysis {
  const perMode = modeCosts(plan);
  const selection: Record<ReportMode, readonly (readonly number[])[]> = { dense: denseSelection(plan), sparse: sparseSelection };
  const attentionPerContext = plan.cost.attention_flops_per_context_token ?? 0;

  const roofline = rows.map((r) => {
    const tokens = r.phase === 'prefill' ? r.batch * settings.promptLen : r.batch; // tokens per call
    const flops = tokens * perMode[r.mode].flops_per_token + r.batch * attendedPositions(r.phase, settings) * attentionPerContext;
    const bytes = weightBytesPerCall(plan, selection[r.mode], tokens);
    return {
      mode: r.mode,
      phase: r.phase,
      batch: r.batch,
      flops_per_call: flops,
      bytes_per_call: bytes,
      flops_per_byte: flops / bytes,
      achieved_gflops: flops / (r.mean_ms / 1000) / 1e9,
    };
  });

  const smallest = Math.min(...settings.batches);
  const largest = Math.max(...settings.batches);
  const bandwidth: BandwidthFigure[] = (['dense', 'sparse'] as ReportMode[]).flatMap((mode) => {
    const row = rows.find((r) => r.mode === mode && r.phase === 'decode' && r.batch === smallest);
    if (!row) return [];
    const bytesPerCall = weightBytesPerCall(plan, selection[mode], smallest);
    const achieved = bytesPerCall / (row.mean_ms / 1000) / 1e9;
    return [{
      mode, batch: smallest, weight_bytes_per_token: bytesPerCall / smallest,
      achieved_gbs: achieved, fraction_of_measured: achieved / machine.memory_bandwidth_gbs,
    }];
  });
  const compute: ComputeFigure[] = roofline
    .filter((p) => p.batch === largest)
    .map((p) => ({
      mode: p.mode as ReportMode,
      phase: p.phase as 'prefill' | 'decode',
      batch: p.batch,
      achieved_gflops: p.achieved_gflops,
      fraction_of_peak: p.achieved_gflops / machine.peak_gflops,
    }));

  const speedups: SpeedupFigure[] = (['prefill', 'decode'] as const).flatMap((phase) =>
    settings.batches.map((batch) => ({ phase, batch, speedup: speedupAt(rows, phase, batch) })),
  );
  const ideal = idealSpeedup(plan);
  const measured = speedupAt(rows, 'decode', smallest);
  return {
    per_mode: perMode,
    ideal_speedup: ideal,
    measured_speedup: measured,
    speedup_batch: smallest,
    speedup_efficiency: measured / ideal,
    speedups,
    bandwidth,
    compute,
    roofline,
  };
}
