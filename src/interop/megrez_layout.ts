/**
 * Megrez2's checkpoint layout (`MegrezMoeForCausalLM`, the vLLM and SGLang `megrez_moe.py` of
 * sii-research/InnoMegrez2): what `dsmoe export` writes for a model with shared expert pools. The module tree of that
 * serving code gives the tensor names: Llama attention (`self_attn.{q,k,v,o}_proj`, q/k/v biases when `qkv_bias`),
 * router `mlp.gate.weight` [E, d] in every MoE layer, routed experts `mlp.experts.{e}.{gate,up,down}_proj.weight`
 * only in the first layer of each pool (the later layers' `set_experts` reuse that module, so their names never
 * exist), a dense layer's MLP `mlp.{gate,up,down}_proj.weight` (layers before `first_k_dense_replace`, width
 * `intermediate_size`), ungated shared experts `mlp.shared_experts.{gate,up,down}_proj.weight` of width
 * `n_shared_experts × moe_intermediate_size`, and an untied `lm_head.weight` (its `ParallelLMHead` is never tied).
 * These are dsmoe's dense names (docs/design.md §2) for everything but the shared experts, so the dense tensor table
 * is the source; docs/interop.md says which fields were confirmed where.
 */
import type { ModelConfig } from '../model/config';
import { denseIntermediateSize, headDim, isDenseLayer, withoutDefaults } from '../model/config';
import type { DType, TensorToWrite } from '../checkpoint/safetensors';
import { denseNames, denseTensors } from '../plan/tensor_table';

export const MEGREZ_MODEL_TYPE = 'megrez_moe';
export const MEGREZ_ARCHITECTURE = 'MegrezMoeForCausalLM';

/** Megrez2's names that dsmoe's dense table does not spell. */
export const megrezNames = {
  sharedExperts: (l: number, part: 'gate' | 'up' | 'down') => `model.layers.${l}.mlp.shared_experts.${part}_proj.weight`,
};

/** Whether a model uses Megrez2's ideas (shared pools, pre-gate, dense first layers), so that Megrez2's layout holds it. */
export function isMegrezShaped(config: ModelConfig): boolean {
  return (config.experts_shared_frequency ?? 1) > 1 || config.pre_gate === true || (config.first_k_dense_replace ?? 0) > 0;
}

/**
 * What Megrez2's serving code cannot run as dsmoe computes it, one `field value (why)` each; empty when the export
 * is exact.
 */
export function megrezExportProblems(config: ModelConfig): string[] {
  const problems: string[] = [];
  const k = config.first_k_dense_replace ?? 0;
  if (config.pre_gate === true && k === 0) {
    // vLLM/SGLang split a pre-gated layer's input into [previous post-attention-norm output; hidden state] from layer
    // first_k_dense_replace on: with no dense layer before them, layer 0 would need a previous block it does not have
    // (dsmoe routes layer 0 on its own input). From one dense layer on the two pre-gate the same layers.
    problems.push('pre_gate true with first_k_dense_replace 0 (Megrez2 pre-gates every layer from first_k_dense_replace on, so it needs a dense layer before them; dsmoe routes layer 0 on its own input)');
  }
  if (config.shared_expert_intermediate_size > 0) {
    problems.push(`shared_expert_intermediate_size ${config.shared_expert_intermediate_size} (dsmoe scales its shared expert by sigmoid(shared_expert_gate · x); Megrez2 adds its shared_experts ungated)`);
  }
  return problems;
}

/**
 * config.json for Megrez2's serving code. Routing is expressed exactly as dsmoe's softmax top-k: `scoring_func:
 * softmax`, `topk_method: greedy` (no e_score_correction_bias), one group (`n_group` = `topk_group` = 1, so
 * the grouped top-k vLLM always uses keeps every expert eligible), `routed_scaling_factor` 1; dense layers only
 * before `first_k_dense_replace` (`moe_layer_freq` 1), of width `intermediate_size`; `n_shared_experts` 0 (the
 * code dereferences the shared experts whenever the field is not null, so null would fail there).
 */
export function toMegrezConfig(config: ModelConfig, topK: number, renormalize: boolean, extra: Record<string, unknown>): Record<string, unknown> {
  const kept = withoutDefaults(config);
  return {
    architectures: [MEGREZ_ARCHITECTURE],
    model_type: MEGREZ_MODEL_TYPE,
    vocab_size: config.vocab_size,
    hidden_size: config.hidden_size,
    num_hidden_layers: config.num_hidden_layers,
    num_attention_heads: config.num_attention_heads,
    num_key_value_heads: config.num_key_value_heads,
    head_dim: headDim(config),
    hidden_act: 'silu',
    max_position_embeddings: config.max_position_embeddings,
    rope_theta: config.rope_theta,
    rope_scaling: null,
    rms_norm_eps: config.rms_norm_eps,
    tie_word_embeddings: config.tie_word_embeddings,
    // LlamaAttention: q/k/v biases from qkv_bias, the o_proj bias from attention_bias
    qkv_bias: true,
    attention_bias: false,
    // the dense layers' MLP width (layers before first_k_dense_replace; E·I by default, unused without them)
    intermediate_size: denseIntermediateSize(config),
    moe_intermediate_size: config.moe_intermediate_size,
    n_routed_experts: config.num_experts,
    n_shared_experts: 0,
    num_experts_per_tok: topK,
    first_k_dense_replace: kept.first_k_dense_replace ?? 0,
    moe_layer_freq: 1,
    experts_shared_frequency: kept.experts_shared_frequency ?? 1,
    pre_gate: kept.pre_gate ?? false,
    topk_method: 'greedy',
    scoring_func: 'softmax',
    n_group: 1,
    topk_group: 1,
    routed_scaling_factor: 1.0,
    norm_topk_prob: renormalize,
    use_cache: true,
    ...extra,
  };
}

/**
 * The tensors of the Megrez2 folder, in checkpoint order: the dense table without its zero shared-expert gate (a
 * name Megrez2 does not have), empty shared experts in every MoE layer ([0, d], [0, d], [d, 0]: `n_shared_experts` 0
 * still builds the modules, so a loader that checks every parameter was loaded finds theirs; a dense layer's
 * `MegrezMoeMLP` has none), and `lm_head.weight` written out when dsmoe ties it.
 */
export function megrezTensors(config: ModelConfig, get: (name: string) => Float32Array, dtype: DType): TensorToWrite[] {
  const d = config.hidden_size;
  const out: TensorToWrite[] = [];
  for (const { name, shape, zero } of denseTensors(config)) {
    if (zero) continue;
    out.push({ name, dtype, shape, data: get(name) });
  }
  for (let l = 0; l < config.num_hidden_layers; l++) {
    if (isDenseLayer(config, l)) continue;
    const empty = new Float32Array(0);
    out.push({ name: megrezNames.sharedExperts(l, 'gate'), dtype, shape: [0, d], data: empty });
    out.push({ name: megrezNames.sharedExperts(l, 'up'), dtype, shape: [0, d], data: empty });
    out.push({ name: megrezNames.sharedExperts(l, 'down'), dtype, shape: [d, 0], data: empty });
  }
  if (config.tie_word_embeddings) out.push({ name: denseNames.lmHead, dtype, shape: [config.vocab_size, d], data: get(denseNames.embed) });
  return out;
}
