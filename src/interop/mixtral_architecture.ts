/**
 * transformers' Mixtral (`modeling_mixtral.py`): Llama attention without biases, router
 * `block_sparse_moe.gate` [E, d] and experts `block_sparse_moe.experts.{e}.w1` (gate) / `w3` (up) / `w2` (down),
 * E = `num_local_experts`, width `intermediate_size`. Routing: softmax over all experts, top-k, then ALWAYS divided
 * by the sum of the selected probabilities. transformers 5 renames `block_sparse_moe.` to `mlp.` and fuses the
 * experts (its conversion mapping); both spellings are read.
 */
import type { ModelConfig } from '../model/config';
import type { HfArchitecture, ImportedConfig } from './architecture';
import { capAtWindow, commonProblems, decoderShape, type HfConfig, numberField, ropeTheta } from './hf_config_fields';

const layer = (l: number) => `model.layers.${l}`;

export const mixtralArchitecture: HfArchitecture = {
  modelType: 'mixtral',
  readConfig(hf: HfConfig): ImportedConfig {
    const problems = commonProblems(hf);
    if (hf.attention_bias === true) problems.push('attention_bias true (an o_proj bias, which the internal model has no place for)');
    const notes: string[] = [];
    const config: ModelConfig = {
      ...decoderShape(hf),
      num_experts: numberField(hf, 'num_local_experts', 8),
      moe_intermediate_size: numberField(hf, 'intermediate_size', 14336),
      shared_expert_intermediate_size: 0,
      num_experts_per_tok: numberField(hf, 'num_experts_per_tok', 2),
      max_position_embeddings: numberField(hf, 'max_position_embeddings', 4096 * 32),
      rope_theta: ropeTheta(hf, 1e6),
      rms_norm_eps: numberField(hf, 'rms_norm_eps', 1e-5),
      tie_word_embeddings: hf.tie_word_embeddings === true,
    };
    capAtWindow(config, hf.sliding_window, notes);
    return { config, routingRule: 'softmax-renormalized', qkNorm: false, qkvBias: false, notes, problems };
  },
  router: (l) => [`${layer(l)}.block_sparse_moe.gate.weight`, `${layer(l)}.mlp.gate.weight`],
  expert: (l, e) => ({
    gate: [`${layer(l)}.block_sparse_moe.experts.${e}.w1.weight`, `${layer(l)}.mlp.experts.${e}.w1.weight`],
    up: [`${layer(l)}.block_sparse_moe.experts.${e}.w3.weight`, `${layer(l)}.mlp.experts.${e}.w3.weight`],
    down: [`${layer(l)}.block_sparse_moe.experts.${e}.w2.weight`, `${layer(l)}.mlp.experts.${e}.w2.weight`],
  }),
  fusedExpertsPrefix: (l) => [`${layer(l)}.mlp.experts`, `${layer(l)}.block_sparse_moe.experts`],
};
