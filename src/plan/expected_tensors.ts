/** Every tensor a plan names, with the shape and dtype it must have in the weights file. */
import { headDim } from '../model/config';
import type { Plan } from './plan_format';
import { layerOps } from './plan_format';
import { packedDtype, type PackedDtype } from './dtype';

export function expectedTensors(plan: Plan): { name: string; shape: number[]; dtype: PackedDtype; usedAt: string }[] {
  const c = plan.config;
  const d = c.hidden_size;
  const hd = headDim(c);
  const qkvRows = (c.num_attention_heads + 2 * c.num_key_value_heads) * hd;
  const matrix = packedDtype(plan.dtype);
  const f32: PackedDtype = 'F32';
  const out: { name: string; shape: number[]; dtype: PackedDtype; usedAt: string }[] = [
    { name: plan.embedding, shape: [c.vocab_size, d], dtype: matrix, usedAt: 'embedding' },
  ];
  plan.layers.forEach((layer, l) => {
    const ops = layerOps(layer);
    const I = ops.experts.intermediate_size;
    const K = ops.experts.kept.length;
    const at = (i: number, f: string) => `layers[${l}].ops[${i}].${f}`;
    out.push(
      { name: ops.attnNorm.weight, shape: [d], dtype: f32, usedAt: at(0, 'weight') },
      { name: ops.attention.qkv, shape: [qkvRows, d], dtype: matrix, usedAt: at(1, 'qkv') },
      { name: ops.attention.qkv_bias, shape: [qkvRows], dtype: f32, usedAt: at(1, 'qkv_bias') },
      { name: ops.attention.o, shape: [d, c.num_attention_heads * hd], dtype: matrix, usedAt: at(1, 'o') },
      ...(ops.attention.q_norm !== undefined && ops.attention.k_norm !== undefined
        ? [
            { name: ops.attention.q_norm, shape: [c.num_attention_heads * hd], dtype: f32, usedAt: at(1, 'q_norm') },
            { name: ops.attention.k_norm, shape: [c.num_key_value_heads * hd], dtype: f32, usedAt: at(1, 'k_norm') },
          ]
        : []),
      { name: ops.mlpNorm.weight, shape: [d], dtype: f32, usedAt: at(3, 'weight') },
      { name: ops.router.weight, shape: [c.num_experts, d], dtype: f32, usedAt: at(4, 'weight') },
      { name: ops.experts.gate_up, shape: [K, 2 * I, d], dtype: matrix, usedAt: at(6, 'gate_up') },
      { name: ops.experts.down, shape: [K, d, I], dtype: matrix, usedAt: at(6, 'down') },
    );
    if (ops.shared) {
      const Is = ops.shared.intermediate_size;
      out.push(
        { name: ops.shared.gate_up, shape: [2 * Is, d], dtype: matrix, usedAt: at(7, 'gate_up') },
        { name: ops.shared.down, shape: [d, Is], dtype: matrix, usedAt: at(7, 'down') },
        { name: ops.shared.gate, shape: [d], dtype: f32, usedAt: at(7, 'gate') },
      );
    }
  });
  out.push({ name: plan.final.norm, shape: [d], dtype: f32, usedAt: 'final.norm' });
  if (!c.tie_word_embeddings) out.push({ name: plan.final.lm_head, shape: [c.vocab_size, d], dtype: matrix, usedAt: 'final.lm_head' });
  return out;
}
