import type { ModelConfig } from '../model/config';
import type { MatrixDtype, PlanCost } from '../plan/plan_format';
import { bytesPerWeight, MATRIX_DTYPES } from '../plan/dtype';

export type { PlanCost };

/**
 * The parts of a sparse plan (docs/design.md §4) the report reads. A structural subset of the converter's `Plan`
 * type, so that the report's arithmetic can be tested on hand-written plans without weights.
 */
export interface PlanView {
  config: ModelConfig;
  dtype: string;
  /** Storage of the routed experts and attention projections when they differ from `dtype` (plan.json `dtypes`). */
  dtypes?: { experts: string; attention: string };
  strategy: { name: string; k?: number | null; epsilon?: number; calib_tokens?: number };
  layers: { index: number; ops: ReadonlyArray<{ op: string; kept?: number[]; k?: number; mode?: string; epsilon?: number }> }[];
  calibration?: null | {
    tokens: number;
    layers: { k?: number; mass_covered?: number; expert_load?: number[]; never_selected?: number[]; mean_selected?: number }[];
    attention_layers?: { mean_selected?: number }[]; // MoA plans
  };
  cost: PlanCost;
}

/** Bytes of one weight of a plan matrix (on average over a block for the quantized dtypes). */
export function dtypeBytes(dtype: string): number {
  const known = MATRIX_DTYPES.find((d) => d === dtype.toLowerCase());
  if (!known) throw new Error(`unknown plan dtype ${dtype}`);
  return bytesPerWeight(known as MatrixDtype);
}

/** Storage of the routed experts: the plan's `dtypes.experts`, else its `dtype`. */
export function expertDtype(plan: Pick<PlanView, 'dtype' | 'dtypes'>): string {
  return plan.dtypes?.experts ?? plan.dtype;
}

/** Kept expert ids of each layer, in plan order (all E when a layer has no experts op listing them). */
export function keptExperts(plan: PlanView): number[][] {
  return plan.layers.map((layer) => {
    const experts = layer.ops.find((op) => op.op === 'experts');
    return experts?.kept ? [...experts.kept] : Array.from({ length: plan.config.num_experts }, (_, e) => e);
  });
}

/** Experts each layer's select op keeps per token (its k; for threshold, its k_max bound is not a count). */
export function planTopK(plan: PlanView): number[] {
  return plan.layers.map((layer) => {
    const select = layer.ops.find((op) => op.op === 'select');
    return select?.k ?? plan.strategy.k ?? plan.config.num_experts_per_tok;
  });
}
