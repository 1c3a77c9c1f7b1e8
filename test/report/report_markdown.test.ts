import type { ModelConfig } from '../../src/model/config';
import { costSplitSection, megrezNotes } from '../../src/report/report_markdown';
import { costSplit, denseCostSplit, planCost } from '../../src/plan/cost';
import type { PlanView } from '../../src/report/plan_view';
import { modeCosts } from '../../src/report/analysis';
import type { ReportJson } from '../../src/report/report_json';

const tiny: ModelConfig = {
  vocab_size: 257,
  hidden_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 8,
  moe_intermediate_size: 64,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
};
const reportOf = (config: ModelConfig) => ({ model: { config } }) as unknown as Pick<ReportJson, 'model'>;

describe("report.md on Megrez2's architecture", () => {
  test('stored against one set of experts per layer, written out for tiny-megrez; the pre-gated layers', () => {
    const notes = megrezNotes(reportOf({ ...tiny, experts_shared_frequency: 2, pre_gate: true })).join('\n');
    // tiny stores 527,616 parameters (recipes/README.md: 0.53 M); one pool of 8 experts × 3·128·64 fewer: 331,008
    expect(notes).toContain('1 pool of routed experts for 2 layers, so the model stores 331k parameters where one set of experts per layer would store 528k (-37.3%)');
    expect(notes).toContain("layer 1 routes on the previous layer's post-attention-norm output");
  });

  test('nothing for a model without sharing or pre-gating', () => {
    expect(megrezNotes(reportOf(tiny))).toEqual([]);
  });
});

describe('report.md: cost per token split by attention and MLP', () => {
  // tiny-moa's shape: 4 attention experts of one head; a plan with top-2 attention experts and top-2 MLP experts.
  const config: ModelConfig = { ...tiny, attention_experts: 4, heads_per_attention_expert: 1 };
  const plan: PlanView = {
    config,
    dtype: 'f32',
    strategy: { name: 'topk', k: 2 },
    layers: [0, 1].map((index) => ({ index, ops: [{ op: 'attention_select', mode: 'topk', k: 2 }, { op: 'select', mode: 'topk', k: 2 }, { op: 'experts', kept: [0, 1, 2, 3, 4, 5, 6, 7] }] })),
    calibration: null,
    cost: planCost(config, 'f32', [8, 8], [2, 2], undefined, { kept: [4, 4], active: [2, 2] }),
  };
  const report = { model: { config, attention_experts_per_token: [2, 2] }, cost: modeCosts(plan) } as unknown as Pick<ReportJson, 'model' | 'cost'>;

  test('report.json carries the split per mode; the table states it with the attention experts per token', () => {
    expect(report.cost.sparse.split).toEqual(costSplit(plan));
    expect(report.cost.dense.split).toEqual(denseCostSplit(plan));
    const lines = costSplitSection(report).join('\n');
    // attention per layer, hd 32: k/v 2·64·128 + bias 128, router 4·128, norm 128; each attention expert 32·128·2 + 32.
    const fixedPart = 2 * 64 * 128 + 128 + 4 * 128 + 128;
    const perExpert = 2 * 32 * 128 + 32;
    expect(report.cost.sparse.split.attention.params).toBe(2 * (fixedPart + 2 * perExpert));
    expect(lines).toContain('| sparse | 67.2k |'); // 2 · (17152 + 2 · 8224)
    expect(lines).toContain('Dense runs all 4; sparse runs the plan\'s attention experts (attention experts per token by layer: 2, 2).');
  });

  test('a plain model: the split without the attention-expert sentence', () => {
    const plain: PlanView = { ...plan, config: tiny, layers: plan.layers.map((l) => ({ ...l, ops: l.ops.slice(1) })), cost: planCost(tiny, 'f32', [8, 8], [2, 2]) };
    const lines = costSplitSection({ model: { config: tiny }, cost: modeCosts(plain) } as unknown as Pick<ReportJson, 'model' | 'cost'>).join('\n');
    expect(lines).toContain('| mode | attention params / token | MLP params / token |');
    expect(lines).not.toContain('attention experts');
  });
});
