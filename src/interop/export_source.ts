/**
 * What `dsmoe export` reads: a dense folder (readAnyDenseCheckpoint, imports included) or a sparse plan folder (its
 * packed weights read back under dense names), reduced to the one routing description Qwen2-MoE's config can hold —
 * a single top-k for every layer and one `norm_topk_prob`. Whatever that config cannot express is refused, never
 * approximated: threshold routing without --top-k, pruned experts, q/k norms, and attention experts (MoA) unless there
 * is one (docs/design.md §12).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { layerOps } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { planWeights } from '../plan/plan_reference';
import { readAnyDenseCheckpoint } from './read_any_dense';
import type { ReferenceWeights } from '../model/reference';
import { attentionExperts, moeLayers, type ModelConfig } from '../model/config';
import { denseNames } from '../plan/tensor_table';

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
    // A dense MLP layer's fixed one-expert routing (first_k_dense_replace) is no routing to export.
    const moe = moeLayers(plan.config);
    const selects = moe.map((l) => layerOps(plan.layers[l]).select);
    const pruned = moe.map((l) => ({ l, kept: layerOps(plan.layers[l]).experts.kept.length })).filter((x) => x.kept < E);
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
  const A = attentionExperts(source.weights.config);
  if (A > 1) {
    // Plain attention has no place for the per-token expert weights pa_a: the exported model would compute other logits.
    throw new UserError(
      `${dir}: attention_experts ${A}: Qwen2-MoE's plain attention cannot weight heads per token by the attention router (MoA), so a model with more than one attention expert cannot be exported`,
    );
  }
  if (A === 1) {
    source = { ...source, weights: asPlainAttention(source.weights) };
    notes.push('one attention expert (pa ≡ 1): exported as plain attention, its router dropped');
  }
  const E = source.weights.config.num_experts;
  if (!Number.isInteger(source.topK) || source.topK < 1 || source.topK > E) throw new UserError(`--top-k must be an integer in 1..${E}, got ${source.topK}`);
  return source;
}

/**
 * A model with one attention expert as plain attention: that expert holds every head and its probability is always 1,
 * so q_proj/q bias/o_proj are its tensors and the router is dropped (docs/design.md §12).
 */
function asPlainAttention(weights: ReferenceWeights): ReferenceWeights {
  const { attention_experts: _a, heads_per_attention_expert: _n, ...plain } = weights.config;
  const renamed = new Map<string, string>();
  for (let l = 0; l < plain.num_hidden_layers; l++) {
    renamed.set(denseNames.q(l), denseNames.attnExpertQ(l, 0));
    renamed.set(denseNames.qBias(l), denseNames.attnExpertQBias(l, 0));
    renamed.set(denseNames.o(l), denseNames.attnExpertO(l, 0));
  }
  return { ...weights, config: plain as ModelConfig, get: (name) => weights.get(renamed.get(name) ?? name) };
}
