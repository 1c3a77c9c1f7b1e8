/**
 * A plan seen through the reference forward: its packed weights read back under the dense names, and its select
 * ops as routing rules. `referenceForward(planWeights(p), tokens, { routing: planRoutingRules(p.plan) })` is the
 * plain-TypeScript twin of what the native runtime computes for a plan.
 */
import { readSafetensors } from '../checkpoint/safetensors';
import type { ReferenceWeights, RoutingRule } from '../model/reference';
import type { LoadedPlan, Plan } from './plan_format';
import { layerOps } from './plan_format';
import { denseLayer, planTensors, type PlanTensor } from './tensor_table';
import { decodeTensor, isQuantized } from './dtype';

export function planRoutingRules(plan: Plan): RoutingRule[] {
  return plan.layers.map((layer) => {
    const { select, experts } = layerOps(layer);
    const kept = experts.kept;
    return select.mode === 'topk'
      ? { mode: 'topk', k: select.k, renormalize: select.renormalize, kept }
      : { mode: 'threshold', epsilon: select.epsilon, kMax: select.k_max, renormalize: select.renormalize, kept };
  });
}

/** A MoA plan's attention_select ops as routing rules over the A attention experts (`all`: every kept expert); [] for plain plans. */
export function planAttentionRules(plan: Plan): RoutingRule[] {
  if (!plan.layers.some((layer) => layerOps(layer).attnSelect)) return [];
  return plan.layers.map((layer) => {
    const { attnSelect: select, attention } = layerOps(layer);
    const kept = attention.kept as number[];
    if (!select) throw new Error('plan: a layer without attention_select in a MoA plan'); // validatePlan rules this out
    if (select.mode === 'all') return { mode: 'topk', k: kept.length, kept };
    return select.mode === 'topk'
      ? { mode: 'topk', k: select.k, kept }
      : { mode: 'threshold', epsilon: select.epsilon, kMax: select.k_max, kept };
  });
}

/** Where a dense tensor sits inside a packed one: elements [offset, offset + size). */
interface Block {
  packed: PlanTensor;
  offset: number;
  size: number;
}

/**
 * The plan's weights (widened to f32; quantized blocks dequantized, exactly as the runtime's kernels see them) under
 * their dense names: the packing of tensor_table.ts undone.
 */
export function planWeights(loaded: LoadedPlan): ReferenceWeights {
  const { plan } = loaded;
  const blocks = new Map<string, Block>();
  for (const tensor of planTensors(plan)) {
    let offset = 0;
    for (const part of tensor.parts) {
      const size = part.shape.reduce((a, b) => a * b, 1);
      blocks.set(part.name, { packed: tensor, offset, size });
      offset += size;
    }
  }
  // Pruned experts are absent from the packed tensors; asking for one is a caller's mistake worth naming.
  const pruned = new Map<string, string>();
  plan.layers.forEach((layer, l) => {
    const ops = layerOps(layer);
    const kept = ops.experts.kept;
    const dense = denseLayer(plan.config, l);
    dense.experts.forEach((expert, e) => {
      if (kept.includes(e)) return;
      const why = `plan: expert ${e} of layer ${l} was pruned (kept: ${kept.join(', ')})`;
      for (const tensor of [expert.gate, expert.up, expert.down]) pruned.set(tensor.name, why);
    });
    const keptA = ops.attention.kept;
    dense.attnExperts.forEach((expert, a) => {
      if (!keptA || keptA.includes(a)) return;
      const why = `plan: attention expert ${a} of layer ${l} was pruned (kept: ${keptA.join(', ')})`;
      for (const tensor of [expert.q, expert.qBias, expert.o]) pruned.set(tensor.name, why);
    });
  });

  const file = readSafetensors(loaded.weightsPath);
  const cache = new Map<string, Float32Array>();
  const packed = ({ name, dtype, shape }: PlanTensor) => {
    let values = cache.get(name);
    if (!values) {
      values = isQuantized(dtype) ? decodeTensor(file.raw(name), dtype, shape.reduce((a, b) => a * b, 1)) : file.get(name);
      cache.set(name, values);
    }
    return values;
  };
  const get = (denseName: string): Float32Array => {
    const block = blocks.get(denseName);
    if (!block) throw new Error(pruned.get(denseName) ?? `plan: no tensor corresponds to ${denseName}`);
    const values = packed(block.packed);
    return block.offset === 0 && block.size === values.length ? values : values.slice(block.offset, block.offset + block.size);
  };
  const qkNorm = plan.layers.some((layer) => layerOps(layer).attention.q_norm !== undefined);
  return { config: plan.config, get, ...(qkNorm ? { qkNorm } : {}) };
}
