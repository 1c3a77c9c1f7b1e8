/** A dense checkpoint folder as the trainer saves it: weights, tokenizer, trainer state and optimizer moments. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { saveDenseCheckpoint, NamedTensor } from '../../src/checkpoint/dense';
import { UserError } from '../../src/errors';
import { ModelConfig } from '../../src/model/config';
import { toCheckpointTensors } from '../../src/model/checkpoint_layout';
import { initParams, paramsToArrays, disposeParams } from '../../src/model/params';
import { buildTokenizer } from '../../src/data';

export const config: ModelConfig = {
  vocab_size: 257,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_experts: 3,
  moe_intermediate_size: 8,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

function modelTensors(): NamedTensor[] {
  const params = initParams(config, 3);
  const tensors = toCheckpointTensors(config, paramsToArrays(params));
  disposeParams(params);
  return tensors;
}

const state = {
  step: 5,
  max_steps: 10,
  recipe_hash: 'abc',
  recipe_name: 't',
  seed: 1,
  tokens_seen: 100,
  elapsed_s: 1,
  lr: 0.001,
  rng_state: null,
  backend: 'cpu',
};

export function saveFull(dir: string, tensors = modelTensors()): NamedTensor[] {
  const zeros = tensors.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(0.5) }));
  saveDenseCheckpoint(dir, {
    config,
    tensors,
    tokenizer: buildTokenizer({ type: 'byte', vocab_size: 257 }, ''),
    trainerState: state,
    optimizerState: { expAvg: zeros, expAvgSq: zeros },
    configExtra: { dsmoe: { routing: 'dense' } },
  });
  return tensors;
}

export const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-ckpt-'));

/** Runs `f`, expecting a one-line UserError whose message contains every fragment. */
export function expectUserError(f: () => unknown, ...fragments: string[]): void {
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(UserError);
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  for (const fragment of fragments) expect(message).toContain(fragment);
}
