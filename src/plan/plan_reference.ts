/**
 * A plan seen through the reference forward: its packed weights read back under Hugging Face names, and its select
 * ops as routing rules. `referenceForward(planWeights(p), tokens, { routing: planRoutingRules(p.plan) })` is the
 * plain-TypeScript twin of what the native runtime computes for a plan.
 */
import { readSafetensors } from '../checkpoint/safetensors';
import { headDim } from '../model/config';
import type { ReferenceWeights, RoutingRule } from '../model/reference';
import type { LoadedPlan, Plan } from './plan_format';
import { layerOps } from './plan_format';

export function planRoutingRules(plan: Plan): RoutingRule[] {
  return plan.layers.map((layer) => {
    const { select, experts } = layerOps(layer);
    const kept = experts.kept;
    return select.mode === 'topk'
      ? { mode: 'topk', k: select.k, renormalize: select.renormalize, kept }
      : { mode: 'threshold', epsilon: select.epsilon, kMax: select.k_max, renormalize: select.renormalize, kept };
  });
}

/** The plan's weights (widened to f32) under their dense names; pruned experts are absent. */
export function planWeights(loaded: LoadedPlan): ReferenceWeights {
  const { plan } = loaded;
  const c = plan.config;
  const d = c.hidden_size;
  const hd = headDim(c);
  const qRows = c.num_attention_heads * hd;
  const kvRows = c.num_key_value_heads * hd;
  const I = c.moe_intermediate_size;
  const Is = c.shared_expert_intermediate_size;
  const file = readSafetensors(loaded.weightsPath);
  const cache = new Map<string, Float32Array>();
  const packed = (name: string) => {
    let values = cache.get(name);
    if (!values) cache.set(name, (values = file.get(name)));
    return values;
  };
  const rows = (values: Float32Array, from: number, count: number, width: number) => values.slice(from * width, (from + count) * width);

  const get = (hfName: string): Float32Array => {
    if (hfName === 'model.embed_tokens.weight') return packed(plan.embedding);
    if (hfName === 'model.norm.weight') return packed(plan.final.norm);
    if (hfName === 'lm_head.weight') return packed(plan.final.lm_head);
    const match = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
    const l = match ? Number(match[1]) : -1;
    if (!match || l >= plan.layers.length) throw new Error(`plan: no tensor corresponds to ${hfName}`);
    const ops = layerOps(plan.layers[l]);
    const rest = match[2];
    const qkv = () => packed(ops.attention.qkv);
    const bias = () => packed(ops.attention.qkv_bias);
    switch (rest) {
      case 'input_layernorm.weight': return packed(ops.attnNorm.weight);
      case 'post_attention_layernorm.weight': return packed(ops.mlpNorm.weight);
      case 'self_attn.q_proj.weight': return rows(qkv(), 0, qRows, d);
      case 'self_attn.k_proj.weight': return rows(qkv(), qRows, kvRows, d);
      case 'self_attn.v_proj.weight': return rows(qkv(), qRows + kvRows, kvRows, d);
      case 'self_attn.q_proj.bias': return rows(bias(), 0, qRows, 1);
      case 'self_attn.k_proj.bias': return rows(bias(), qRows, kvRows, 1);
      case 'self_attn.v_proj.bias': return rows(bias(), qRows + kvRows, kvRows, 1);
      case 'self_attn.o_proj.weight': return packed(ops.attention.o);
      case 'mlp.gate.weight': return packed(ops.router.weight);
      case 'self_attn.q_norm.weight': if (ops.attention.q_norm) return packed(ops.attention.q_norm); break;
      case 'self_attn.k_norm.weight': if (ops.attention.k_norm) return packed(ops.attention.k_norm); break;
    }
    if (ops.shared) {
      switch (rest) {
        case 'mlp.shared_expert.gate_proj.weight': return rows(packed(ops.shared.gate_up), 0, Is, d);
        case 'mlp.shared_expert.up_proj.weight': return rows(packed(ops.shared.gate_up), Is, Is, d);
        case 'mlp.shared_expert.down_proj.weight': return packed(ops.shared.down);
        case 'mlp.shared_expert_gate.weight': return packed(ops.shared.gate);
      }
    }
    const expert = /^mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(rest);
    if (expert) {
      const slot = ops.experts.kept.indexOf(Number(expert[1]));
      if (slot < 0) throw new Error(`plan: expert ${expert[1]} of layer ${l} was pruned (kept: ${ops.experts.kept.join(', ')})`);
      if (expert[2] === 'down') return rows(packed(ops.experts.down), slot * d, d, I); // [d, I]
      return rows(packed(ops.experts.gate_up), slot * 2 * I + (expert[2] === 'gate' ? 0 : I), I, d); // [I, d]
    }
    throw new Error(`plan: no tensor corresponds to ${hfName}`);
  };
  const qkNorm = plan.layers.some((layer) => layerOps(layer).attention.q_norm !== undefined);
  return { config: c, get, ...(qkNorm ? { qkNorm } : {}) };
}
