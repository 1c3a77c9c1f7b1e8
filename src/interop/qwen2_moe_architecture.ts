/**
 * transformers' Qwen2-MoE (`modeling_qwen2_moe.py`), dsmoe's own layout: q/k/v biases (`qkv_bias`, default true),
 * router `mlp.gate`, experts `mlp.experts.{e}.{gate,up,down}_proj`, an optional shared expert
 * `mlp.shared_expert.*` scaled by sigmoid(`mlp.shared_expert_gate` · x). Routing: softmax over all experts, top-k,
 * renormalised only when `norm_topk_prob` is true.
 */
import type { ModelConfig } from '../model/config';
import type { HfArchitecture, ImportedConfig } from './architecture';
import { capAtWindow, commonProblems, decoderShape, type HfConfig, numberField, ropeTheta } from './hf_config_fields';
import { denseNames } from '../plan/tensor_table';

export const qwen2MoeArchitecture: HfArchitecture = {
  modelType: 'qwen2_moe',
  readConfig(hf: HfConfig): ImportedConfig {
    const problems = commonProblems(hf);
    const notes: string[] = [];
    const config: ModelConfig = {
      ...decoderShape(hf),
      num_experts: numberField(hf, 'num_experts', 60),
      moe_intermediate_size: numberField(hf, 'moe_intermediate_size', 1408),
      shared_expert_intermediate_size: numberField(hf, 'shared_expert_intermediate_size', 5632),
      num_experts_per_tok: numberField(hf, 'num_experts_per_tok', 4),
      max_position_embeddings: numberField(hf, 'max_position_embeddings', 32768),
      rope_theta: ropeTheta(hf, 10000),
      rms_norm_eps: numberField(hf, 'rms_norm_eps', 1e-6),
      tie_word_embeddings: hf.tie_word_embeddings === true,
    };
    const step = numberField(hf, 'decoder_sparse_step', 1);
    const mlpOnly = Array.isArray(hf.mlp_only_layers) ? hf.mlp_only_layers : [];
    if (step !== 1 || mlpOnly.length > 0) problems.push('dense MLP layers (decoder_sparse_step ≠ 1 or mlp_only_layers): every layer must be MoE');
    if (hf.use_sliding_window === true) capAtWindow(config, hf.sliding_window, notes);
    return {
      config,
      routingRule: hf.norm_topk_prob === true ? 'softmax-renormalized' : 'softmax-unnormalized',
      qkNorm: false,
      qkvBias: hf.qkv_bias !== false,
      notes,
      problems,
    };
  },
  // dsmoe's own layout: the dense names are Qwen2-MoE's
  router: (l) => [denseNames.router(l)],
  expert: (l, e) => ({ gate: [denseNames.expertGate(l, e)], up: [denseNames.expertUp(l, e)], down: [denseNames.expertDown(l, e)] }),
  fusedExpertsPrefix: (l) => [denseNames.fusedExpertsPrefix(l)],
};
