/**
 * The quality–cost sweep the converter chooses its plan from: the report's sweep (src/runtime/quality_cost_sweep.ts:
 * top-k for every k, the threshold rule at each ε) plus threshold-topk, the per-layer k the threshold rule implies
 * at each ε, all scored by the native runtime on the calibration tokens of a plan folder that keeps every expert.
 *
 * Top-k and threshold run as routing overrides of one opened model. A per-layer k is not an override: each distinct
 * k vector is written into the folder's plan.json (the weights do not change) and the plan opened again.
 */
import * as path from 'path';
import { writeJsonAtomic } from '../checkpoint/atomic';
import { activeParamsWithExperts } from '../plan/cost';
import { attentionDecisionsOf, buildPlan } from '../plan/build_plan';
import type { Plan, PlanChoicePoint, SelectOp } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { openPlan } from '../runtime/open_plan';
import { measureQuality, type QualityInput } from '../runtime/quality';
import { sweepQualityCost, sweepRoutings, type QualityCostPoint } from '../runtime/quality_cost_sweep';
import { kFromThresholdMean } from './routing_stats';

export interface PlanSweep {
  denseLoss: number;
  /** Predicted tokens each point was scored on. */
  tokens: number;
  points: Omit<PlanChoicePoint, 'within_bound'>[];
}

export interface PlanSweepOptions {
  epsilons: readonly number[];
  threads?: number;
  log?: (line: string) => void;
}

/** Windows scored together: the KV cache holds this many sequences. */
const MAX_SLOTS = 64;

/** Sweeps the plan in `planDir` (top-k with every expert kept) on `windows`; leaves plan.json as it found it. */
export async function sweepPlanChoices(planDir: string, windows: readonly number[][], options: PlanSweepOptions): Promise<PlanSweep> {
  const log = options.log ?? (() => undefined);
  const original = readPlan(planDir).plan;
  const E = original.config.num_experts;
  const input: QualityInput = {
    windows: windows.filter((w) => w.length >= 2).map((w) => Int32Array.from(w)),
    vocabSize: original.config.vocab_size,
    tokenBytes: () => 1, // only the loss is used
    slots: Math.min(MAX_SLOTS, windows.length),
  };
  const maxContext = Math.max(...input.windows.map((w) => w.length));
  const open = () => openPlan(planDir, { threads: options.threads, slots: input.slots, maxContext });

  const opened = open();
  let dense;
  let swept: QualityCostPoint[];
  try {
    dense = await measureQuality(opened.context, input, { mode: 'dense' });
    log(`  dense: loss ${dense.loss.toFixed(4)} on ${dense.tokens} tokens`);
    swept = await sweepQualityCost(opened.context, original, input, sweepRoutings(E, options.epsilons));
  } finally {
    opened.model.dispose();
  }
  const points: Omit<PlanChoicePoint, 'within_bound'>[] = swept.map((p) => ({
    strategy: p.sweep,
    k: p.k,
    epsilon: p.epsilon,
    layer_k: null,
    mean_active_experts: p.mean_active_experts,
    active_params: p.active_params,
    loss: p.loss,
  }));

    // threshold-topk: the per-layer k of each ε, scored once per distinct vector that is not a uniform top-k.
  const scored = new Map<string, number>();
  try {
    for (const p of swept.filter((q) => q.sweep === 'threshold')) {
      const layerK = p.layer_mean_experts.map((mean) => kFromThresholdMean(mean, E));
      const key = layerK.join(',');
      if (layerK.every((k) => k === layerK[0])) continue; // the top-k point of that k
      let loss = scored.get(key);
      if (loss === undefined) {
        writeJsonAtomic(path.join(planDir, 'plan.json'), withLayerK(original, layerK));
        const perLayer = open();
        try {
          loss = (await measureQuality(perLayer.context, input)).loss;
        } finally {
          perLayer.model.dispose();
        }
        scored.set(key, loss);
      }
      const mean = layerK.reduce((a, b) => a + b, 0) / layerK.length;
      points.push({ strategy: 'threshold-topk', k: null, epsilon: p.epsilon, layer_k: layerK, mean_active_experts: mean, active_params: activeParamsWithExperts(original, mean), loss });
    }
  } finally {
    writeJsonAtomic(path.join(planDir, 'plan.json'), original);
  }
  for (const p of points) {
    const rule = p.strategy === 'topk' ? `top-${p.k}` : p.strategy === 'threshold' ? `threshold ε=${p.epsilon}` : `threshold-topk ε=${p.epsilon} (k ${p.layer_k!.join(',')})`;
    log(`  ${rule}: loss ${p.loss.toFixed(4)}, ${p.mean_active_experts.toFixed(2)} experts/token`);
  }
  return { denseLoss: dense.loss, tokens: dense.tokens, points };
}

/** The same plan with top-k at a per-layer k (every expert kept, so the weights are unchanged). */
function withLayerK(plan: Plan, layerK: number[]): Plan {
  const select: Omit<SelectOp, 'op'>[] = plan.layers.map((layer, l) => {
    const current = layer.ops.find((op) => op.op === 'select') as SelectOp;
    return { mode: 'topk', k: layerK[l], epsilon: current.epsilon, k_max: layerK[l], renormalize: current.renormalize };
  });
  return buildPlan({
    config: plan.config,
    dtype: plan.dtype,
    dtypes: plan.dtypes,
    source: plan.source,
    strategy: { ...plan.strategy, name: 'threshold-topk', k: null },
    kept: plan.layers.map((layer) => [...(layer.ops.find((op) => op.op === 'experts') as { kept: number[] }).kept]),
    select,
    expectedExperts: layerK,
    calibration: null,
    qkNorm: plan.layers.some((layer) => layer.ops.some((op) => op.op === 'attention' && 'q_norm' in op)),
    attention: attentionDecisionsOf(plan), // MoA: the attention routing stays the plan's
  });
}
