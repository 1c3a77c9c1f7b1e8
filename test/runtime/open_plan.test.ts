/** openPlan checks the memory a plan needs (weights + KV cache) before the runtime allocates anything. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { openPlan } from '../../src/runtime/open_plan';

const config: ModelConfig = {
  vocab_size: 260,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 4,
  moe_intermediate_size: 16,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
};

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-open-plan-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

test('a KV cache larger than the machine is refused with one line, and a fitting one opens', () => {
  const dir = path.join(root, 'plan');
  writeRandomPlan(dir, config, { dtype: 'f32', seed: 1, k: 2 });
  const opened = openPlan(dir, { threads: 1, slots: 2, maxContext: 64 });
  opened.model.dispose();

  // Bytes per slot: k and v, layers × context × kv_heads × head_dim floats; twice the machine's RAM in slots.
  const perSlot = 2 * 2 * 64 * 2 * 16 * 4;
  const slots = Math.ceil((2 * os.totalmem()) / perSlot);
  let error: unknown;
  try {
    openPlan(dir, { threads: 1, slots, maxContext: 64 }).model.dispose();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(UserError);
  expect((error as Error).message).toMatch(new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} needs ≈ .* \\(plan weights .*, KV cache of ${slots} × 64 positions .*\\); this machine has .* available of .*$`));
});
