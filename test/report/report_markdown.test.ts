import type { ModelConfig } from '../../src/model/config';
import { megrezNotes } from '../../src/report/report_markdown';
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
