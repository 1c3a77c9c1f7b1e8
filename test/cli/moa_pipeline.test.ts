/**
 * Attention experts (MoA, docs/design.md §12) end to end through the commands a user runs: `train` a shrunk
 * tiny-moa a few steps (the loss falls, train_log.jsonl carries the attention routers' MI loss and statistics), the
 * checkpoint reloads and computes what the plain reference computes on its tensors, `eval` reports the attention
 * routing, `convert` keeps every attention expert by default and the plan reference's loss equals the dense
 * checkpoint's, and `export` refuses it with one line.
 */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import * as tf from '@tensorflow/tfjs';
import { convertCommand } from '../../src/cli/commands/convert';
import { evalCommand } from '../../src/cli/commands/eval';
import { exportCommand } from '../../src/cli/commands/export';
import { trainCommand } from '../../src/cli/commands/train';
import { readDenseCheckpoint } from '../../src/checkpoint/read_dense';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import { readPlan } from '../../src/plan/read_plan';
import { SparseModel } from '../../src/runtime/model';
import { layerOps } from '../../src/plan/plan_format';
import { planAttentionRules, planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { loadDenseModel } from '../../src/train/load_dense_model';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';
import { writeTestRecipe } from '../helpers/recipe_fixtures';
import { runCommand as run } from '../helpers/run_command';

afterAll(removeTempDirs);

const L = 2;
const A = 4; // tiny-moa: 4 attention experts of 1 head

test('train tiny-moa a few steps → reload → eval reports attention routing → convert (every attention expert kept) = dense; export refuses', async () => {
  const root = tempDir('moa');
  const recipe = writeTestRecipe(root, 'tiny-moa-test', 'tiny-moa');
  const shrunk = YAML.parse(fs.readFileSync(recipe, 'utf8'));
  // Smaller than tiny (d 32, 4 MLP experts) so that training stays a few seconds; tiny-moa's MoA settings kept.
  shrunk.model = { ...shrunk.model, hidden_size: 32, num_experts: 4 };
  shrunk.train = { ...shrunk.train, batch_size: 8, eval_tokens: 256, log_every: 2, eval_every: 12, warmup_steps: 2 };
  fs.writeFileSync(recipe, YAML.stringify(shrunk));
  const dense = path.join(root, 'dense');
  await run(trainCommand as never, ['train', recipe, '--out', dense, '--max-steps', '12', '--backend', 'cpu']);

  // --- train_log.jsonl: the loss falls; the attention routers' MI loss and statistics are logged
  const log = fs.readFileSync(path.join(dense, 'train_log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  expect(log[log.length - 1].loss).toBeLessThan(log[0].loss - 0.3);
  for (const row of log) {
    expect(row.mi_loss_attention).toBeLessThanOrEqual(0); // −H(mean p) + mean H(p) ≤ 0
    expect(row.mi_loss_attention).toBeGreaterThanOrEqual(-Math.log(A) - 1e-9);
    expect(row.attention_routing).toHaveLength(L);
    for (const layer of row.attention_routing) {
      expect(layer.expert_load).toHaveLength(A);
      expect(layer.expert_load.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 6);
      expect(layer.max_entropy).toBeCloseTo(Math.log(A), 9);
    }
  }

  // --- the checkpoint: MoA config and tensors; reloaded, the tfjs model computes the reference forward's logits
  const checkpoint = readDenseCheckpoint(dense);
  expect(checkpoint.config).toMatchObject({ attention_experts: A, heads_per_attention_expert: 1 });
  expect((checkpoint.hfConfig.dsmoe as Record<string, unknown>).mi_alpha_attention).toBe(1e-2);
  const ids = Array.from('In the beginning God created', (ch) => ch.charCodeAt(0));
  const reference = referenceForward(checkpoint, ids, { collectRouterProbs: true });
  const loaded = loadDenseModel(dense);
  const logits = tf.tidy(() => loaded.model.forward(Int32Array.from(ids), 1, ids.length).logits.dataSync());
  loaded.dispose();
  let num = 0;
  let den = 0;
  logits.forEach((v, i) => {
    num += (v - reference.logits[i]) ** 2;
    den += reference.logits[i] ** 2;
  });
  expect(num / den).toBeLessThan(1e-9); // nMSE
  expect(reference.attentionRouterProbs).toHaveLength(L);

  // --- eval: the attention routers' statistics beside the MLP's, in JSON and in the text report
  const json = JSON.parse((await run(evalCommand as never, ['eval', dense, '--json', '--backend', 'cpu', '--context', '32'])).split('\n').filter((l) => l.startsWith('{')).pop()!);
  expect(json.attention_layers).toHaveLength(L);
  expect(json.attention_layers[0].expert_load).toHaveLength(A);
  expect(json.layers[0].expert_load).toHaveLength(4);
  const text = await run(evalCommand as never, ['eval', dense, '--backend', 'cpu', '--context', '32']);
  expect(text).toMatch(/attention layer 1: H\(mean p\) [\d.]+ \/ 1\.386 nats/);

  // --- convert with every attention expert kept (the default): the plan reference's loss is the dense checkpoint's
  const sparse = path.join(root, 'sparse');
  await run(convertCommand as never, ['convert', dense, '--out', sparse, '--strategy', 'topk', '--k', '4', '--calib-tokens', '0', '--quiet']);
  const loadedPlan = readPlan(sparse);
  expect(loadedPlan.plan.strategy.attention).toEqual({ name: 'all', k: null, epsilon: 0 });
  const longText = Array.from(
    'And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. ' +
      'And God said, Let there be light: and there was light. And God saw the light, that it was good: and God divided the light from the darkness.',
    (ch) => ch.charCodeAt(0),
  );
  const context = checkpoint.config.max_position_embeddings;
  const text2 = longText.slice(0, context); // one window the model was built for
  const lossOf = (logits: Float32Array) => {
    const { sum, count } = nextTokenLoss(logits, text2, checkpoint.config.vocab_size);
    return sum / count;
  };
  const denseLoss = lossOf(referenceForward(checkpoint, text2).logits);
  const planLoss = lossOf(
    referenceForward(planWeights(loadedPlan), text2, { routing: planRoutingRules(loadedPlan.plan), attentionRouting: planAttentionRules(loadedPlan.plan) }).logits,
  );
  expect(Math.abs(planLoss - denseLoss) / denseLoss).toBeLessThan(1e-3);
  // ... and so is the native runtime's (the first "done when" line)
  const nativeLoss = async (dir: string, ids = text2) => {
    const model = SparseModel.load(dir, { threads: 2 });
    const score = await model.score(ids, { context });
    await model.dispose();
    return score.loss;
  };
  expect(Math.abs((await nativeLoss(sparse)) - denseLoss) / denseLoss).toBeLessThan(1e-3);

  // --- sparse attention experts: the native runtime computes the plan reference's logits; the loss moves a little
  const sparseLosses: string[] = [];
  const denseLong = await nativeLoss(sparse, longText); // every expert of both kinds, windows of `context` tokens
  for (const flags of [['--attention-k', '2'], ['--attention-k', '1'], ['--attention-strategy', 'threshold']]) {
    const dir = path.join(root, `sparse-${flags.join('')}`);
    await run(convertCommand as never, ['convert', dense, '--out', dir, '--strategy', 'topk', '--k', '4', '--calib-tokens', '0', '--quiet', ...flags]);
    const p = readPlan(dir);
    const want = referenceForward(planWeights(p), text2, { routing: planRoutingRules(p.plan), attentionRouting: planAttentionRules(p.plan) }).logits;
    const model = SparseModel.load(dir, { threads: 2 });
    const got = await model.logits(text2);
    await model.dispose();
    let diff = 0;
    let scale = 0;
    got.forEach((v, i) => {
      diff = Math.max(diff, Math.abs(v - want[i]));
      scale = Math.max(scale, Math.abs(want[i]));
    });
    expect(diff / scale).toBeLessThan(1e-4);
    const loss = await nativeLoss(dir);
    expect(Math.abs(loss - lossOf(want)) / lossOf(want)).toBeLessThan(1e-3);
    const long = await nativeLoss(dir, longText);
    const rule = p.plan.layers.map((layer) => JSON.stringify(layerOps(layer).attnSelect)).join(' ');
    sparseLosses.push(`${flags.join(' ')} ${rule}: ${long.toFixed(4)} vs dense ${denseLong.toFixed(4)} (${(((long - denseLong) / denseLong) * 100).toFixed(2)}%)`);
  }
  process.stdout.write(`MoA sparse attention, native loss (nats) on ${longText.length} tokens in windows of ${context}: ${sparseLosses.join('; ')}\n`);

  // --- export: one line
  await expect(run(exportCommand as never, ['export', dense, '--out', path.join(root, 'hf'), '--quiet'])).rejects.toThrow(/attention_experts 4: .*cannot be exported/);
}, 600_000); // generous: the shared build machine runs at load 20+
