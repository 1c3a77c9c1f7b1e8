/**
 * transformers' OLMoE (`modeling_olmoe.py`): Llama attention without biases plus `self_attn.q_norm` — an RMSNorm
 * over the whole q projection, weight [hidden_size] = [H·hd] — and `self_attn.k_norm` over the whole k projection,
 * weight [(hidden_size / H)·KV] = [KV·hd], both applied before the heads are split and before RoPE. Router
 * `mlp.gate`, experts `mlp.experts.{e}.{gate,up,down}_proj` of width `intermediate_size`; softmax over all experts,
 * top-k, renormalised only when `norm_topk_prob` is true (false in OLMoE-1B-7B). No shared expert.
 */
import type { ModelConfig } from '../model/config';
import type { HfArchitecture, ImportedConfig } from './architecture';
import { commonProblems, decoderShape, type HfConfig, numberField, ropeTheta } from './hf_config_fields';

const layer = (l: number) => `model.layers.${l}`;

export const olmoeArchitecture: HfArchitecture = {
  modelType: 'olmoe',
  readConfig(hf: HfConfig): ImportedConfig {
    const problems = commonProblems(hf);
    if (hf.clip_qkv !== undefined && hf.clip_qkv !== null) problems.push(`clip_qkv ${JSON.stringify(hf.clip_qkv)} (dsmoe does not clamp q/k/v)`);
    // attention_bias also gives o_proj a bias, which the internal model has no place for
    if (hf.attention_bias === true) problems.push('attention_bias true (an o_proj bias, which the internal model has no place for)');
    const config: ModelConfig = {
      ...decoderShape(hf),
      num_experts: numberField(hf, 'num_experts', 64),
      moe_intermediate_size: numberField(hf, 'intermediate_size', 2048),
      shared_expert_intermediate_size: 0,
      num_experts_per_tok: numberField(hf, 'num_experts_per_tok', 8),
      max_position_embeddings: numberField(hf, 'max_position_embeddings', 4096),
      rope_theta: ropeTheta(hf, 10000),
      rms_norm_eps: numberField(hf, 'rms_norm_eps', 1e-5),
      tie_word_embeddings: hf.tie_word_embeddings === true,
    };
    return {
      config,
      routingRule: hf.norm_topk_prob === true ? 'softmax-renormalized' : 'softmax-unnormalized',
      qkNorm: true,
      qkvBias: false,
      notes: [],
      problems,
    };
  },
  router: (l) => [`${layer(l)}.mlp.gate.weight`],
  expert: (l, e) => ({
    gate: [`${layer(l)}.mlp.experts.${e}.gate_proj.weight`],
    up: [`${layer(l)}.mlp.experts.${e}.up_proj.weight`],
    down: [`${layer(l)}.mlp.experts.${e}.down_proj.weight`],
  }),
  fusedExpertsPrefix: (l) => [`${layer(l)}.mlp.experts`],
};
