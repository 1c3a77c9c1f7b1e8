/** readPlan refuses malformed plans and weight files with messages naming the file, field and expectation. */
import * as fs from 'fs';
import * as path from 'path';
import { readPlan } from '../../src/plan/read_plan';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { UserError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { tempDir, removeTempDirs } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const config: ModelConfig = {
  vocab_size: 270,
  hidden_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 2,
  num_experts: 4,
  moe_intermediate_size: 5,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** A fresh valid plan folder, with plan.json edited by `edit`. */
function planWith(edit: (plan: Json) => void, dtype: 'f32' | 'bf16' = 'bf16'): string {
  const dir = tempDir('readplan');
  writeRandomPlan(dir, config, { dtype, seed: 1, k: 2 });
  const file = path.join(dir, 'plan.json');
  const plan = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(plan);
  fs.writeFileSync(file, JSON.stringify(plan));
  return dir;
}

function expectRejected(dir: string, message: string | RegExp): void {
  let thrown: unknown;
  try {
    readPlan(dir);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(UserError);
  if (typeof message === 'string') expect((thrown as Error).message).toContain(message);
  else expect((thrown as Error).message).toMatch(message);
}

describe('readPlan rejects', () => {
  test('a folder without plan.json', () => {
    expectRejected(tempDir('readplan-empty'), /plan\.json: not found/);
  });

  test('plan.json that is not JSON', () => {
    const dir = planWith(() => undefined);
    fs.writeFileSync(path.join(dir, 'plan.json'), '{"format": "dsmoe-plan",');
    expectRejected(dir, /plan\.json: not valid JSON/);
  });

  test('another format or version', () => {
    expectRejected(planWith((p) => (p.format = 'gguf')), 'plan.json: format: expected "dsmoe-plan", got "gguf"');
    expectRejected(planWith((p) => (p.version = 2)), 'plan.json: version: expected 1 (this dsmoe reads plan version 1), got 2');
  });

  test('an inconsistent config', () => {
    expectRejected(planWith((p) => (p.config.num_attention_heads = 5)), 'plan.json: config: hidden_size (12) must be divisible by num_attention_heads (5)');
    expectRejected(planWith((p) => delete p.config.rope_theta), 'plan.json: config: missing rope_theta');
    // A plain plan whose config claims attention experts (docs/design.md §12) lacks their ops: never run as plain attention.
    expectRejected(
      planWith((p) => Object.assign(p.config, { attention_experts: 2, heads_per_attention_expert: p.config.num_attention_heads / 2 })),
      'plan.json: layers[0].ops: expected ops in the order [rms_norm, attention_router, attention_select, attention,',
    );
  });

  test('an unknown dtype', () => {
    expectRejected(planWith((p) => (p.dtype = 'f64')), 'plan.json: dtype: expected one of "f32", "bf16", "f16", got "f64"');
  });

  test('a select op with k out of range, a bad mode or a missing flag', () => {
    expectRejected(planWith((p) => (p.layers[1].ops[5].k = 0)), 'plan.json: layers[1].ops[5].k: expected an integer in 1..2, got 0');
    expectRejected(planWith((p) => (p.layers[0].ops[5].k_max = 9)), 'plan.json: layers[0].ops[5].k_max: expected an integer in 1..4, got 9');
    expectRejected(planWith((p) => (p.layers[0].ops[5].mode = 'sample')), 'plan.json: layers[0].ops[5].mode: expected one of "topk", "threshold", got "sample"');
    expectRejected(planWith((p) => delete p.layers[0].ops[5].renormalize), 'plan.json: layers[0].ops[5].renormalize: expected true or false, got nothing');
    expectRejected(
      planWith((p) => Object.assign(p.layers[0].ops[5], { mode: 'threshold', epsilon: 4 })),
      'plan.json: layers[0].ops[5].epsilon: expected a threshold below E = 4',
    );
  });

  test('ops out of order', () => {
    const dir = planWith((p) => {
      const ops = p.layers[0].ops;
      [ops[4], ops[5]] = [ops[5], ops[4]];
    });
    expectRejected(dir, 'plan.json: layers[0].ops: expected ops in the order [rms_norm, attention, residual, rms_norm, router, select, experts, combine, residual] (without a shared expert), got "[rms_norm, attention, residual, rms_norm, select, router, experts, combine, residual]"');
  });

  test('kept experts that repeat, are unsorted or out of range', () => {
    expectRejected(planWith((p) => (p.layers[0].ops[6].kept = [0, 1, 1, 3])), 'plan.json: layers[0].ops[6].kept[2]: expected expert ids in 0..3, unique and increasing, got 1');
    expectRejected(planWith((p) => (p.layers[1].ops[6].kept = [0, 1, 2, 4])), 'plan.json: layers[1].ops[6].kept[3]: expected expert ids in 0..3, unique and increasing, got 4');
    expectRejected(planWith((p) => (p.layers[1].ops[6].kept = [])), 'plan.json: layers[1].ops[6].kept: expected a non-empty array of expert ids, got []');
  });

  test('a wrong layer count, index or expert width', () => {
    expectRejected(planWith((p) => p.layers.pop()), 'plan.json: layers: expected 2 layers (config.num_hidden_layers), got "1 layers"');
    expectRejected(planWith((p) => (p.layers[1].index = 0)), 'plan.json: layers[1].index: expected 1, got 0');
    expectRejected(planWith((p) => (p.layers[0].ops[6].intermediate_size = 6)), 'plan.json: layers[0].ops[6].intermediate_size: expected an integer in 5..5, got 6');
  });

  test('an LM head that contradicts tie_word_embeddings, or a weights path outside the folder', () => {
    expectRejected(planWith((p) => (p.final.lm_head = 'embed')), 'plan.json: final.lm_head: expected a tensor of its own (config.tie_word_embeddings is false), got "embed"');
    expectRejected(planWith((p) => (p.weights = '../weights.safetensors')), 'plan.json: weights: expected a file name inside the plan folder');
  });

  test('a missing weights file', () => {
    const dir = planWith(() => undefined);
    fs.rmSync(path.join(dir, 'weights.safetensors'));
    expectRejected(dir, /weights\.safetensors: not found \(plan\.json: weights names it\)/);
  });

  test('a tensor the plan names but the file lacks', () => {
    expectRejected(
      planWith((p) => (p.layers[1].ops[6].gate_up = 'layers.1.experts.gateup')),
      'weights.safetensors: tensor "layers.1.experts.gateup" (plan.json: layers[1].ops[6].gate_up) is missing',
    );
  });

  test('a tensor of the wrong shape (kept list shorter than the packed experts)', () => {
    expectRejected(planWith((p) => (p.layers[0].ops[6].kept = [0, 2, 3])), 'weights.safetensors: tensor "layers.0.experts.gate_up": expected shape [3, 10, 12], got [4, 10, 12]');
  });

  test('a tensor of the wrong dtype', () => {
    expectRejected(planWith((p) => (p.dtype = 'f16')), 'weights.safetensors: tensor "embed": expected dtype F16 (plan dtype f16), got BF16');
  });

  test('experts stored at another dtype than plan.json says (bf16 weights read as q8_0 blocks)', () => {
    // config's hidden size 12 is not whole blocks either: the field check names it first
    expectRejected(
      planWith((p) => (p.dtypes = { experts: 'q8_0', attention: 'bf16' })),
      'plan.json: dtypes: expected storage the config\'s shapes allow, got "experts at q8_0: blocks of 32 weights need rows of a multiple of 32, but config.hidden_size is 12"',
    );
    expectRejected(
      planWith((p) => (p.dtypes = { experts: 'bf16', attention: 'q2_a' })),
      'plan.json: dtypes: expected storage the config\'s shapes allow, got "attention at q2_a: blocks of 64 weights need rows of a multiple of 64, but config.hidden_size is 12"',
    );
    expectRejected(planWith((p) => (p.dtypes = { experts: 'q3_k', attention: 'bf16' })), 'plan.json: dtypes.experts: expected one of "f32", "bf16", "f16", "q8_0", "q4_0", "q3_a", "q2_a", got "q3_k"');
    expectRejected(planWith((p) => (p.dtypes = { experts: 'bf16' })), 'plan.json: dtypes.attention: expected one of');
  });

  test('a quantized plan whose weights file holds other storage', () => {
    const dir = tempDir('readplan-q');
    const blocks: ModelConfig = { ...config, hidden_size: 32, moe_intermediate_size: 64 };
    writeRandomPlan(dir, blocks, { dtype: 'bf16', seed: 1, k: 2, dtypes: { experts: 'q4_0', attention: 'q8_0' } });
    const loaded = readPlan(dir);
    expect(loaded.header.tensors.get('layers.0.experts.down')).toMatchObject({ dtype: 'U8', shape: [4, 32, 36] });
    const file = path.join(dir, 'plan.json');
    const plan = JSON.parse(fs.readFileSync(file, 'utf8'));
    plan.dtypes.experts = 'q8_0';
    fs.writeFileSync(file, JSON.stringify(plan));
    expectRejected(dir, 'tensor "layers.0.experts.gate_up": expected shape [4, 128, 34] (Q8_0 blocks of [4, 128, 32] weights), got [4, 128, 18]');
    plan.dtypes.experts = 'bf16';
    fs.writeFileSync(file, JSON.stringify(plan));
    expectRejected(dir, 'tensor "layers.0.experts.gate_up": expected shape [4, 128, 32], got [4, 128, 18]; weights.safetensors: tensor "layers.0.experts.gate_up": expected dtype BF16 (plan dtype bf16, experts bf16, attention q8_0), got U8');
  });

  test('a truncated weights file', () => {
    const dir = planWith(() => undefined);
    const file = path.join(dir, 'weights.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 100);
    expectRejected(dir, /weights\.safetensors: not a valid safetensors file \(.*run past the data section/);
  });

  test('bytes after the last tensor', () => {
    const dir = planWith(() => undefined);
    fs.appendFileSync(path.join(dir, 'weights.safetensors'), Buffer.alloc(10));
    expectRejected(dir, 'weights.safetensors: 10 bytes after the last tensor');
  });

  test('a weights file that is not safetensors at all', () => {
    const dir = planWith(() => undefined);
    fs.writeFileSync(path.join(dir, 'weights.safetensors'), 'hello, this is text');
    expectRejected(dir, /weights\.safetensors: not a valid safetensors file/);
  });

  test('and accepts the untouched plan', () => {
    const { plan } = readPlan(planWith(() => undefined));
    expect(plan.layers).toHaveLength(2);
  });
});

describe("Megrez2's expert pools and pre-gate in plan.json", () => {
  const megrez: ModelConfig = { ...config, num_hidden_layers: 3, experts_shared_frequency: 2, pre_gate: true };
  function megrezPlanWith(edit: (plan: Json) => void): string {
    const dir = tempDir('readplan-megrez');
    writeRandomPlan(dir, megrez, { dtype: 'f32', seed: 1, k: 2 });
    const file = path.join(dir, 'plan.json');
    const plan = JSON.parse(fs.readFileSync(file, 'utf8'));
    edit(plan);
    fs.writeFileSync(file, JSON.stringify(plan));
    return dir;
  }

  test('a valid plan: every layer names its pool, pre-gated routers say so', () => {
    const { plan } = readPlan(megrezPlanWith(() => undefined));
    expect(plan.layers.map((layer) => (layer.ops[6] as { pool?: number }).pool)).toEqual([0, 0, 2]);
    expect(plan.layers.map((layer) => (layer.ops[4] as { pre_gate?: true }).pre_gate ?? false)).toEqual([false, true, true]);
    expect(plan.layers[1].ops[6]).toMatchObject({ gate_up: 'layers.0.experts.gate_up', down: 'layers.0.experts.down' });
  });

  test('a layer that names another pool, other tensors or another kept list than its pool', () => {
    expectRejected(megrezPlanWith((p) => (p.layers[1].ops[6].pool = 1)), 'layers[1].ops[6].pool: expected an integer in 0..0, got 1');
    expectRejected(
      megrezPlanWith((p) => (p.layers[1].ops[6].gate_up = 'layers.2.experts.gate_up')),
      'layers[1].ops[6].gate_up: expected "layers.0.experts.gate_up", as layer 0 (its expert pool)',
    );
    expectRejected(megrezPlanWith((p) => (p.layers[1].ops[6].kept = [0, 1, 2])), 'layers[1].ops[6].kept: expected [0,1,2,3], as layer 0');
  });

  test('a pre_gate flag that contradicts the config, or a pool field in an unshared plan', () => {
    expectRejected(megrezPlanWith((p) => delete p.layers[2].ops[4].pre_gate), 'layers[2].ops[4].pre_gate: expected true');
    expectRejected(megrezPlanWith((p) => (p.layers[0].ops[4].pre_gate = true)), 'layers[0].ops[4].pre_gate: expected no pre_gate field');
    expectRejected(planWith((p) => (p.layers[0].ops[6].pool = 0)), 'layers[0].ops[6].pool: expected no pool field');
  });
});
