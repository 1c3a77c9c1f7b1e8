/**
 * Megrez2 (`MegrezMoeForCausalLM`, model_type `megrez_moe`; the vLLM/SGLang `megrez_moe.py` of
 * sii-research/InnoMegrez2): routed experts shared by `experts_shared_frequency` consecutive MoE layers from
 * `first_k_dense_replace` on, stored once under the pool's first layer (src/interop/megrez_layout.ts). Imported
 * exactly where dsmoe computes the same thing — softmax top-k (renormalised when `norm_topk_prob`) over one group,
 * no correction bias, scale 1, dense layers only before `first_k_dense_replace`, pre-gating after them, no ungated
 * shared experts — and refused, naming the field and value, where it does not: Megrez2-3x7B itself (sigmoid scores
 * with `noaux_tc`, 4 shared experts) is refused. Absent routing fields read as vLLM's FusedMoE and DeepSeek's config defaults (softmax, no
 * bias, scale 1, one group); docs/interop.md lists what was and was not confirmed against a published config.
 */
import type { ModelConfig } from '../model/config';
import type { HfArchitecture, ImportedConfig } from './architecture';
import { commonProblems, decoderShape, type HfConfig, numberField, ropeTheta } from './hf_config_fields';
import { denseNames } from '../plan/tensor_table';
import { MEGREZ_MODEL_TYPE } from './megrez_layout';

export const megrezArchitecture: HfArchitecture = {
  modelType: MEGREZ_MODEL_TYPE,
  readConfig(hf: HfConfig): ImportedConfig {
    const problems = [...commonProblems(hf), ...megrezProblems(hf)];
    const f = numberField(hf, 'experts_shared_frequency', 1);
    const firstDense = numberField(hf, 'first_k_dense_replace', 0);
    // The dense layers' width: required with dense layers (DeepSeek's default 11008 would be a guess).
    if (firstDense > 0 && hf.intermediate_size === undefined) problems.push(`first_k_dense_replace ${firstDense} without intermediate_size (the dense layers' MLP width)`);
    const config: ModelConfig = {
      ...decoderShape(hf),
      num_experts: numberField(hf, 'n_routed_experts'),
      moe_intermediate_size: numberField(hf, 'moe_intermediate_size'),
      shared_expert_intermediate_size: 0,
      num_experts_per_tok: numberField(hf, 'num_experts_per_tok'),
      max_position_embeddings: numberField(hf, 'max_position_embeddings', 8192), // vLLM's getattr default
      rope_theta: ropeTheta(hf, 10000),
      rms_norm_eps: numberField(hf, 'rms_norm_eps', 1e-6),
      tie_word_embeddings: hf.tie_word_embeddings === true,
      ...(f !== 1 ? { experts_shared_frequency: f } : {}),
      ...(firstDense !== 0 ? { first_k_dense_replace: firstDense, intermediate_size: numberField(hf, 'intermediate_size') } : {}),
      ...(hf.pre_gate === true ? { pre_gate: true } : {}),
    };
    const notes = hf.tie_word_embeddings === true ? ['tie_word_embeddings true: lm_head.weight, if present, is not read (the embedding is the head, as transformers ties it)'] : [];
    return {
      config,
      routingRule: hf.norm_topk_prob === true ? 'softmax-renormalized' : 'softmax-unnormalized',
      qkNorm: false,
      qkvBias: hf.qkv_bias === true,
      notes,
      problems,
    };
  },
  // Megrez2's router and routed-expert names are dsmoe's dense names; experts are read from each pool's first layer.
  router: (l) => [denseNames.router(l)],
  expert: (l, e) => ({ gate: [denseNames.expertGate(l, e)], up: [denseNames.expertUp(l, e)], down: [denseNames.expertDown(l, e)] }),
  fusedExpertsPrefix: (l) => [denseNames.fusedExpertsPrefix(l)],
};

/** Megrez2 features dsmoe's model cannot reproduce exactly, each as `field value (what it does)`. */
function megrezProblems(hf: HfConfig): string[] {
  const problems: string[] = [];
  const show = (value: unknown) => JSON.stringify(value);
  const firstDense = hf.first_k_dense_replace ?? 0;
  const freq = hf.moe_layer_freq ?? 1;
  if (freq !== 1) problems.push(`moe_layer_freq ${show(freq)} (dense MLP layers between MoE layers; dsmoe's dense layers come first only)`);
  if (hf.pre_gate === true && firstDense === 0) {
    problems.push('pre_gate true with first_k_dense_replace 0 (Megrez2 pre-gates from layer first_k_dense_replace on, reading the block before it; dsmoe routes layer 0 on its own input)');
  }
  const shared = hf.n_shared_experts ?? null;
  if (shared !== null && shared !== 0) problems.push(`n_shared_experts ${show(shared)} (ungated shared experts; dsmoe's shared expert is scaled by a sigmoid gate)`);
  const scoring = hf.scoring_func ?? 'softmax';
  if (scoring !== 'softmax') problems.push(`scoring_func ${show(scoring)} (dsmoe routes by softmax over all experts)`);
  if (hf.topk_method === 'noaux_tc') problems.push('topk_method "noaux_tc" (e_score_correction_bias added to the scores before top-k)');
  const groups = hf.n_group ?? null;
  const kept = hf.topk_group ?? null;
  if (groups !== null && kept !== null && kept !== groups) problems.push(`topk_group ${show(kept)} of n_group ${show(groups)} (grouped top-k leaves experts of unchosen groups out)`);
  const scale = hf.routed_scaling_factor ?? 1;
  if (scale !== 1) problems.push(`routed_scaling_factor ${show(scale)} (routed experts' output scaled; dsmoe's is not)`);
  if (hf.attention_bias === true || hf.bias === true) problems.push('attention_bias true (an o_proj bias, which the internal model has no place for)');
  return problems;
}
