/**
 * Packs dense (Hugging Face named) tensors into a plan's runtime layout (docs/design.md §4) and streams them into
 * the plan's weights file, one packed tensor in memory at a time.
 */
import { names } from '../checkpoint/names';
import { qkNormNames, type ReferenceWeights } from '../model/reference';
import type { Plan } from '../plan/plan_format';
import { layerOps } from '../plan/plan_format';
import { expectedTensors } from '../plan/expected_tensors';
import { encodeTensor } from '../plan/dtype';
import { StreamingSafetensorsWriter } from '../checkpoint/streaming_safetensors_writer';

/** Concatenates row blocks into one array. */
function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** For every tensor name of the plan, how to build it (in f32) from the dense weights. */
export function packedTensorBuilders(plan: Plan, dense: ReferenceWeights): Map<string, () => Float32Array> {
  const c = plan.config;
  const builders = new Map<string, () => Float32Array>();
  builders.set(plan.embedding, () => dense.get(names.embed)); // [V, d]
  plan.layers.forEach((layer, l) => {
    const ops = layerOps(layer);
    builders.set(ops.attnNorm.weight, () => dense.get(names.inputNorm(l))); // [d]
    builders.set(ops.attention.qkv, () => concat([dense.get(names.q(l)), dense.get(names.k(l)), dense.get(names.v(l))])); // [(H+2KV)·hd, d]
    builders.set(ops.attention.qkv_bias, () => concat([dense.get(names.qBias(l)), dense.get(names.kBias(l)), dense.get(names.vBias(l))]));
    builders.set(ops.attention.o, () => dense.get(names.o(l))); // [d, H·hd]
    if (ops.attention.q_norm !== undefined && ops.attention.k_norm !== undefined) {
      builders.set(ops.attention.q_norm, () => dense.get(qkNormNames.q(l))); // [H·hd]
      builders.set(ops.attention.k_norm, () => dense.get(qkNormNames.k(l))); // [KV·hd]
    }
    builders.set(ops.mlpNorm.weight, () => dense.get(names.postAttentionNorm(l))); // [d]
    builders.set(ops.router.weight, () => dense.get(names.router(l))); // [E, d]
    // [K, 2I, d]: per kept expert, its I gate rows then its I up rows
    builders.set(ops.experts.gate_up, () =>
      concat(ops.experts.kept.flatMap((e) => [dense.get(names.expertGate(l, e)), dense.get(names.expertUp(l, e))])),
    );
    builders.set(ops.experts.down, () => concat(ops.experts.kept.map((e) => dense.get(names.expertDown(l, e))))); // [K, d, I]
    if (ops.shared) {
      builders.set(ops.shared.gate_up, () => concat([dense.get(names.sharedGate(l)), dense.get(names.sharedUp(l))])); // [2Is, d]
      builders.set(ops.shared.down, () => dense.get(names.sharedDown(l))); // [d, Is]
      builders.set(ops.shared.gate, () => dense.get(names.sharedExpertGate(l))); // [1, d] → [d]
    }
  });
  builders.set(plan.final.norm, () => dense.get(names.finalNorm)); // [d]
  if (!c.tie_word_embeddings) builders.set(plan.final.lm_head, () => dense.get(names.lmHead)); // [V, d]
  return builders;
}

/** Writes the plan's weights file from dense weights, in the order `expectedTensors` lists them. */
export function writePackedWeights(file: string, plan: Plan, dense: ReferenceWeights, metadata: Record<string, string>): void {
  const specs = expectedTensors(plan).map(({ name, shape, dtype }) => ({ name, shape, dtype }));
  const builders = packedTensorBuilders(plan, dense);
  const writer = new StreamingSafetensorsWriter(file, specs, metadata);
  try {
    for (const spec of specs) {
      const values = builders.get(spec.name)!();
      const expected = spec.shape.reduce((a, b) => a * b, 1);
      if (values.length !== expected) {
        throw new Error(`packing ${spec.name}: built ${values.length} values, the layout needs ${expected} ([${spec.shape.join(', ')}])`);
      }
      writer.write(encodeTensor(values, spec.dtype));
    }
    writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  }
}
