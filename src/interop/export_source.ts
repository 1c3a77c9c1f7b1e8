/**
 * What `dsmoe export` reads: a dense folder (readAnyDenseCheckpoint, imports included) or a sparse plan folder (its
 * packed weights read back under dense names), reduced to the one routing description Qwen2-MoE's config can hold —
 * a single top-k for every layer and one `norm_topk_prob`. Whatever that config cannot express is refused, never
 * approximated: threshold routing without --top-k, pruned experts, and q/k norms.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { layerOps } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { planWeights } from '../plan/plan_reference';
import { readAnyDenseCheckpoint } from './read_any_dense';
import type { ReferenceWeights } from '../model/reference';

export interface ExportSource {
  kind: 'dense' | 'plan';
  weights: ReferenceWeights;
  topK: number;
  renormalize: boolean;
  sourceModelType: string;
  notes: string[];
}

export function readExportSource(dir: string, requestedTopK?: number): ExportSource {
  const notes: string[] = [];
  let source: ExportSource;
  if (fs.existsSync(path.join(dir, 'plan.json'))) {
    const loaded = readPlan(dir, { qkNorm: true });
    const { plan } = loaded;
    const E = plan.config.num_experts;
    const selects = plan.layers.map((layer) => layerOps(layer).select);
    const pruned = plan.layers.map((layer, l) => ({ l, kept: layerOps(layer).experts.kept.length })).filter((x) => x.kept < E);
    if (pruned.length) {
      // Qwen2-MoE's router has no bias to keep an expert from being chosen; zero experts would still take top-k slots.
      throw new UserError(
        `${dir}: the plan prunes experts (layer ${pruned[0].l} keeps ${pruned[0].kept} of ${E}); Qwen2-MoE cannot express a never-selected expert, so export the dense folder or a plan converted without --prune-below`,
      );
    }
    const renorm = new Set(selects.map((s) => s.renormalize));
    if (renorm.size > 1) throw new UserError(`${dir}: layers disagree on renormalize; Qwen2-MoE's norm_topk_prob is one flag for all layers`);
    const ks = new Set(selects.map((s) => (s.mode === 'topk' ? s.k : -1)));
    let topK = requestedTopK;
    if (topK === undefined) {
      if (ks.has(-1)) throw new UserError(`${dir}: threshold routing cannot be expressed in Qwen2-MoE's config; pass --top-k K to export top-K routing`);
      if (ks.size > 1) throw new UserError(`${dir}: layers use different k (${[...ks].join(', ')}); Qwen2-MoE has one num_experts_per_tok, pass --top-k K`);
      topK = [...ks][0];
    } else if (ks.size !== 1 || !ks.has(topK)) {
      notes.push(`routing exported as top-${topK} (the plan selects ${selects.map((s) => (s.mode === 'topk' ? `top-${s.k}` : `threshold ε=${s.epsilon}`)).join(', ')})`);
    }
    source = { kind: 'plan', weights: planWeights(loaded), topK, renormalize: [...renorm][0], sourceModelType: plan.source.model_type, notes };
  } else {
    const dense = readAnyDenseCheckpoint(dir);
    const topK = requestedTopK ?? dense.config.num_experts_per_tok;
    source = { kind: 'dense', weights: dense, topK, renormalize: dense.normTopkProb, sourceModelType: dense.modelType ?? 'qwen2_moe', notes };
  }
  if (source.weights.qkNorm) {
    throw new UserError(`${dir}: this ${source.sourceModelType} model normalises q and k (OLMoE); Qwen2-MoE has no q/k norm, so it cannot be exported as Qwen2MoeForCausalLM`);
  }
  const E = source.weights.config.num_experts;
  if (!Number.isInteger(source.topK) || source.topK < 1 || source.topK > E) throw new UserError(`--top-k must be an integer in 1..${E}, got ${source.topK}`);
  return source;
}
