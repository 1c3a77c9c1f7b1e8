/**
 * Assembles a `Plan` (docs/design.md §4) from its decisions: kept experts and the select rule of every layer.
 * Shared by `dsmoe convert` and by random-init plans so that both write the same graph and tensor names.
 */
import { attentionExperts, denseIntermediateSize, expertPoolOf, headsPerAttentionExpert, isDenseLayer, preGated, withoutDefaults, type ModelConfig } from '../model/config';
import type { AttentionSelectOp, Plan, PlanCalibration, PlanClassDtypes, PlanDtype, PlanLayer, PlanOp, PlanSource, PlanStrategy, SelectOp, PlanChoice } from './plan_format';
import { classDtypes, layerOps, PLAN_FORMAT, PLAN_VERSION } from './plan_format';
import { planNames as n } from './tensor_table';
import { planCost } from './cost';

export const WEIGHTS_FILE = 'weights.safetensors';

export interface PlanDecisions {
  config: ModelConfig;
  dtype: PlanDtype;
  /** Storage of the routed experts and attention projections when either differs from `dtype` (mixed precision). */
  dtypes?: PlanClassDtypes;
  source: PlanSource;
  strategy: PlanStrategy;
  /** [L][K_l] expert ids kept per layer, increasing; the same for every layer of a shared pool. Dense layers: ignored. */
  kept: number[][];
  select: Omit<SelectOp, 'op'>[]; // [L]; dense layers: ignored (`DENSE_LAYER_SELECT`)
  expectedExperts: number[]; // [L] experts per token the cost figures assume; dense layers: ignored (1)
  calibration: PlanCalibration | null;
  /** OLMoE imports: attention applies q/k RMSNorm. */
  qkNorm?: boolean;
  /** Why this routing was chosen, when the converter chose it from a quality–cost sweep. */
  choice?: PlanChoice;
  /** MoA models (docs/design.md §12); absent: every attention expert kept and run (`allAttentionExperts`). */
  attention?: AttentionDecisions;
}

export interface AttentionDecisions {
  kept: number[][]; // [L][K_l] attention expert ids kept per layer, increasing
  select: Omit<AttentionSelectOp, 'op'>[]; // [L]
  expectedExperts: number[]; // [L] attention experts per token the cost figures assume
}

/** The default for a MoA model: every attention expert kept and selected (the paper's top-K mode). */
export function allAttentionExperts(config: ModelConfig): AttentionDecisions {
  const A = attentionExperts(config);
  const L = config.num_hidden_layers;
  return {
    kept: Array.from({ length: L }, () => Array.from({ length: A }, (_, a) => a)),
    select: Array.from({ length: L }, () => ({ mode: 'all' as const, k: A, epsilon: 0, k_max: A, renormalize: false })),
    expectedExperts: new Array<number>(L).fill(A),
  };
}

/** A MoA plan's attention decisions, read back from its ops (to rebuild it with other MLP routing); undefined for plain plans. */
export function attentionDecisionsOf(plan: Plan): AttentionDecisions | undefined {
  if (!plan.layers.some((layer) => layerOps(layer).attnSelect)) return undefined;
  const ops = plan.layers.map((layer) => layerOps(layer));
  return {
    kept: ops.map((o) => [...(o.attention.kept as number[])]),
    select: ops.map((o) => {
      const { op: _op, ...select } = o.attnSelect as AttentionSelectOp;
      return select;
    }),
    expectedExperts: ops.map((o, l) => {
      const mean = plan.calibration?.attention_layers?.[l]?.mean_selected;
      return o.attnSelect!.mode === 'threshold' && mean !== undefined ? mean : o.attnSelect!.k;
    }),
  };
}

/**
 * A dense MLP layer's routing (first_k_dense_replace; docs/design.md §4): its one expert, always, with weight exactly 1
 * (top-1 of the only kept expert, renormalised), whatever the plan's strategy.
 */
export function denseLayerSelect(epsilon: number): Omit<SelectOp, 'op'> {
  return { mode: 'topk', k: 1, epsilon, k_max: 1, renormalize: true };
}

/** The decisions with every dense layer's replaced by its fixed one: one expert kept, selected with weight 1. */
function withDenseLayers(decisions: PlanDecisions): PlanDecisions {
  const { config } = decisions;
  const dense = (l: number) => isDenseLayer(config, l);
  return {
    ...decisions,
    kept: decisions.kept.map((k, l) => (dense(l) ? [0] : k)),
    select: decisions.select.map((s, l) => (dense(l) ? denseLayerSelect(s.epsilon) : s)),
    expectedExperts: decisions.expectedExperts.map((k, l) => (dense(l) ? 1 : k)),
  };
}

export function buildPlan(asGiven: PlanDecisions): Plan {
  const decisions = withDenseLayers(asGiven);
  const { config, kept, select } = decisions;
  // Written only when a class differs from the plan dtype: plans without mixed precision read as before.
  const given = decisions.dtypes;
  const dtypes = given && (given.experts !== decisions.dtype || given.attention !== decisions.dtype) ? given : undefined;
  const shared = config.shared_expert_intermediate_size > 0;
  const sharing = (config.experts_shared_frequency ?? 1) > 1;
  const moa = attentionExperts(config) > 0;
  const attention = moa ? (decisions.attention ?? allAttentionExperts(config)) : null;
  const layers: PlanLayer[] = [];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const pool = expertPoolOf(config, l);
    const dense = isDenseLayer(config, l);
    if (kept[l].join() !== kept[pool].join()) {
      throw new Error(`buildPlan: layer ${l} keeps experts [${kept[l]}] but its pool (layer ${pool}) keeps [${kept[pool]}]`);
    }
    const ops: PlanOp[] = [
      { op: 'rms_norm', weight: n.attnNorm(l) },
      ...(attention
        ? ([
            { op: 'attention_router', weight: n.attnRouter(l), num_experts: attentionExperts(config) },
            { op: 'attention_select', ...attention.select[l] },
          ] as PlanOp[])
        : []),
      {
        op: 'attention',
        qkv: n.qkv(l),
        qkv_bias: n.qkvBias(l),
        o: n.o(l),
        ...(decisions.qkNorm ? { q_norm: n.qNorm(l), k_norm: n.kNorm(l) } : {}),
        ...(attention ? { kept: attention.kept[l], heads_per_expert: headsPerAttentionExpert(config) } : {}),
      },
      { op: 'residual' },
      { op: 'rms_norm', weight: n.mlpNorm(l) },
      {
        op: 'router',
        weight: n.router(l),
        num_experts: config.num_experts,
        ...(preGated(config, l) ? { pre_gate: true as const } : {}),
        ...(dense ? { dense: true as const } : {}),
      },
      { op: 'select', ...select[l] },
      {
        op: 'experts',
        kept: kept[l],
        gate_up: n.expertsGateUp(pool),
        down: n.expertsDown(pool),
        intermediate_size: dense ? denseIntermediateSize(config) : config.moe_intermediate_size,
        ...(sharing ? { pool } : {}),
      },
    ];
    if (shared && !dense) {
      ops.push({
        op: 'shared_expert',
        gate_up: n.sharedGateUp(l),
        down: n.sharedDown(l),
        gate: n.sharedGate(l),
        intermediate_size: config.shared_expert_intermediate_size,
      });
    }
    ops.push({ op: 'combine' }, { op: 'residual' });
    layers.push({ index: l, ops });
  }
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    source: decisions.source,
    config: withoutDefaults(config),
    dtype: decisions.dtype,
    ...(dtypes ? { dtypes } : {}),
    weights: WEIGHTS_FILE,
    strategy: attention && !decisions.strategy.attention ? { ...decisions.strategy, attention: { name: 'all', k: null, epsilon: 0 } } : decisions.strategy,
    embedding: n.embed,
    layers,
    final: { norm: n.finalNorm, lm_head: config.tie_word_embeddings ? n.embed : n.lmHead },
    calibration: decisions.calibration,
    cost: planCost(
      config,
      decisions.dtype,
      kept.map((k) => k.length),
      decisions.expectedExperts,
      classDtypes({ dtype: decisions.dtype, dtypes }),
      attention ? { kept: attention.kept.map((k) => k.length), active: attention.expectedExperts } : undefined,
    ),
    ...(decisions.choice ? { choice: decisions.choice } : {}),
  };
}
