import type { ModelConfig } from '../../src/model/config';
import { planCost } from '../../src/plan/cost';
import type { PlanView } from '../../src/report/plan_view';
import { activeParamsWithExperts, costSplit, denseCostSplit, splitTotal } from '../../src/plan/cost';
import {
  bitsPerByte,
  expectedDistinctExperts,
  fixedWeightBytes,
  idealSpeedup,
  uniformSelection,
  weightBytesPerCall,
} from '../../src/report/cost_model';
import { paperTopK, resolveShape } from '../../src/report/paper_shapes';

// d=8, 2 layers, 2 heads of 4 (1 KV head), 4 experts × 4, vocab 16, tied, no shared expert, f32, top-1.
const config: ModelConfig = {
  vocab_size: 16, hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
  num_experts: 4, moe_intermediate_size: 4, shared_expert_intermediate_size: 0, num_experts_per_tok: 1,
  max_position_embeddings: 32, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true,
};

function plan(k: number): PlanView {
  return {
    config,
    dtype: 'f32',
    strategy: { name: 'topk', k },
    layers: [0, 1].map((index) => ({ index, ops: [{ op: 'select', mode: 'topk', k }, { op: 'experts', kept: [0, 1, 2, 3] }] })),
    calibration: null,
    cost: planCost(config, 'f32', [4, 4], [k, k]),
  };
}

describe('cost model', () => {
  test('ideal speedup from plan.cost equals the hand count of weight bytes', () => {
    // Per token, f32: final norm 8·4 + LM head 16·8·4 + one embedding row 8·4 = 576 bytes.
    // Per layer: qkv 16·8 + o 8·8 = 192 matrix params, norms 16 + qkv bias 16 + router 32 = 64 F32 params,
    // experts a·3·4·8 = 96a params → (192 + 96a)·4 + 64·4 = 1024 + 384a bytes.
    const dense = 576 + 2 * (1024 + 384 * 4); // 5696
    const sparse = 576 + 2 * (1024 + 384 * 1); // 3392
    const p = plan(1);
    expect(p.cost.dense_weight_bytes_per_token).toBe(dense);
    expect(p.cost.active_weight_bytes_per_token).toBe(sparse);
    expect(idealSpeedup(p)).toBeCloseTo(5696 / 3392, 12);
    expect(idealSpeedup(plan(4))).toBe(1);
  });

  test('bytes per call: batch 1 of a balanced top-k reads the active bytes; many tokens approach dense', () => {
    const p = plan(1);
    expect(fixedWeightBytes(p)).toBe(576 + 2 * 1024);
    const sel = uniformSelection(p, [1, 1]); // each expert with probability 1/4
    expect(weightBytesPerCall(p, sel, 1)).toBeCloseTo(p.cost.active_weight_bytes_per_token, 9);
    // 2 tokens: expected distinct experts per layer = 4·(1 − (3/4)²) = 1.75
    expect(expectedDistinctExperts([0.25, 0.25, 0.25, 0.25], 2)).toBeCloseTo(1.75, 12);
    expect(weightBytesPerCall(p, sel, 2)).toBeCloseTo(576 + 2 * (1024 + 384 * 1.75), 9);
    expect(weightBytesPerCall(p, sel, 10_000)).toBeCloseTo(p.cost.dense_weight_bytes_per_token, 6);
  });

  test('active parameters are linear in the mean expert count', () => {
    const p = plan(1);
    expect(activeParamsWithExperts(p, 4)).toBe(p.cost.dense_active_params_per_token);
    expect(activeParamsWithExperts(p, 1)).toBe(p.cost.active_params_per_token);
    expect(activeParamsWithExperts(p, 2.5) - activeParamsWithExperts(p, 1.5)).toBe(2 * 96);
  });

  test('MoA: the split counts the attention experts a token runs; the sweep changes the MLP experts only', () => {
    // 4 heads of 2 as 2 attention experts × 2 heads over 2 kv heads; attention top-1 of 2, MLP top-1 of 4.
    const moa: ModelConfig = { ...config, num_attention_heads: 4, num_key_value_heads: 2, attention_experts: 2, heads_per_attention_expert: 2 };
    const view: PlanView = {
      config: moa,
      dtype: 'f32',
      strategy: { name: 'topk', k: 1 },
      layers: [0, 1].map((index) => ({ index, ops: [{ op: 'attention_select', mode: 'topk', k: 1 }, { op: 'select', mode: 'topk', k: 1 }, { op: 'experts', kept: [0, 1, 2, 3] }] })),
      calibration: null,
      cost: planCost(moa, 'f32', [4, 4], [1, 1], undefined, { kept: [2, 2], active: [1, 1] }),
    };
    const split = costSplit(view);
    expect(splitTotal(split).params).toBe(view.cost.active_params_per_token);
    expect(splitTotal(split).bytes).toBe(view.cost.active_weight_bytes_per_token);
    expect(splitTotal(denseCostSplit(view)).params).toBe(view.cost.dense_active_params_per_token);
    // Per layer by hand: one attention expert = q rows 2·2·8 + q bias 4 + W_o columns 8·4 = 68; k/v 2·2·2·8 = 64 and
    // their bias 8, the attention router 2·8 and the norm 8 always. MLP: one expert 3·4·8 = 96, router 4·8, norm 8.
    expect(split.attention.params).toBe(2 * (68 + 64 + 8 + 16 + 8));
    expect(denseCostSplit(view).attention.params - split.attention.params).toBe(2 * 68);
    expect(split.mlp.params).toBe(2 * (96 + 32 + 8));
    expect(split.other.params).toBe(8 + 16 * 8); // final norm + (tied) LM head
    // Quality–cost points: k MLP experts, the plan's attention expert — not the dense model's two.
    expect(activeParamsWithExperts(view, 1)).toBe(view.cost.active_params_per_token);
    expect(activeParamsWithExperts(view, 4)).toBe(view.cost.dense_active_params_per_token - 2 * 68);
  });

  test('bits per byte', () => {
    // ln 2 nats per token, one byte per token → 1 bit per byte
    expect(bitsPerByte(Math.LN2, 100, 100)).toBeCloseTo(1, 12);
    expect(bitsPerByte(Math.LN2, 100, 200)).toBeCloseTo(0.5, 12);
  });

  test('paper shapes take k from the active share of 32 experts', () => {
    expect(paperTopK(0.41, 32)).toBe(13);
    expect(paperTopK(0.34, 32)).toBe(11);
    expect(paperTopK(0.29, 32)).toBe(9);
    const s = resolveShape('ds-moe-1b', 2);
    expect(s.k).toBe(13);
    expect(s.config.hidden_size).toBe(2048);
    expect(s.config.num_hidden_layers).toBe(2);
    expect(s.config.moe_intermediate_size).toBe(256);
    expect(resolveShape('DS-MoE-6B').config.num_hidden_layers).toBe(36);
    expect(() => resolveShape('no-such-shape')).toThrow(/neither one of/);
  });
});

describe('quantized experts in the cost model', () => {
  test('a q4_0-expert plan: the same fixed bytes as its f32 twin, each expert at 18 bytes per 32 weights', () => {
    const f32 = plan(1);
    const q4: PlanView = {
      ...f32,
      dtypes: { experts: 'q4_0', attention: 'f32' },
      cost: planCost(config, 'f32', [4, 4], [1, 1], { experts: 'q4_0', attention: 'f32' }),
    };
    expect(fixedWeightBytes(q4)).toBeCloseTo(fixedWeightBytes(f32), 9);
    const selection = uniformSelection(q4, [1, 1]);
    expect(weightBytesPerCall(f32, selection, 1) - weightBytesPerCall(q4, selection, 1)).toBeCloseTo(2 * 3 * 8 * 4 * (4 - 18 / 32), 6);
  });
});
