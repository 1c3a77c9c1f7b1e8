/**
 * Megrez2's architecture end to end through the commands a user runs: `train` a shrunk tiny-megrez (experts shared
 * by both layers, layer 1 pre-gated) → `convert` → `generate` / `eval` / `report`. Tiny sizes: well under a minute
 * on two cores. Needs the addon (npm run build:native).
 */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { convertCommand } from '../../src/cli/commands/convert';
import { evalCommand } from '../../src/cli/commands/eval';
import { generateCommand } from '../../src/cli/commands/generate';
import { reportCommand } from '../../src/cli/commands/report';
import { trainCommand } from '../../src/cli/commands/train';
import { readDenseCheckpoint } from '../../src/checkpoint/read_dense';
import { readPlan } from '../../src/plan/read_plan';
import { referenceForward } from '../../src/model/reference';
import { parameterCounts } from '../../src/model/config';
import { planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { SparseModel } from '../../src/runtime/model';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';
import { writeTestRecipe } from '../helpers/recipe_fixtures';
import { runCommand as run } from '../helpers/run_command';

afterAll(removeTempDirs);

test('train tiny-megrez → convert → generate, eval, report', async () => {
  const root = tempDir('megrez');
  const recipe = writeTestRecipe(root, 'tiny-megrez-test', 'tiny-megrez');
  const shrunk = YAML.parse(fs.readFileSync(recipe, 'utf8'));
  // Smaller than tiny (d 32, 4 experts) so that the whole pipeline stays well under a minute on two idle cores.
  shrunk.model = { ...shrunk.model, hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1, num_experts: 4 };
  shrunk.train = { ...shrunk.train, batch_size: 4, eval_tokens: 256 };
  fs.writeFileSync(recipe, YAML.stringify(shrunk));
  const dense = path.join(root, 'dense');
  const sparse = path.join(root, 'sparse');
  await run(trainCommand as never, ['train', recipe, '--out', dense, '--max-steps', '3', '--backend', 'cpu']);

  // The checkpoint stores the one pool once and says how it is shared.
  const checkpoint = readDenseCheckpoint(dense);
  expect(checkpoint.config).toMatchObject({ experts_shared_frequency: 2, pre_gate: true });
  const config = JSON.parse(fs.readFileSync(path.join(dense, 'config.json'), 'utf8'));
  expect(config.experts_shared_frequency).toBe(2);

  await run(convertCommand as never, ['convert', dense, '--out', sparse, '--strategy', 'topk', '--k', '2', '--calib-tokens', '128', '--calib-context', '32', '--quiet']);
  const loaded = readPlan(sparse);
  expect([...loaded.header.tensors.keys()].filter((name) => name.includes('experts')).sort()).toEqual(['layers.0.experts.down', 'layers.0.experts.gate_up']);

  // The runtime's early routing of layer 1 is the reference routing of layer 1 on a held-out-like sequence.
  const ids = Array.from('In the beginning God created', (ch) => ch.charCodeAt(0));
  const model = SparseModel.load(sparse, { threads: 1 });
  await model.logits(ids);
  const [early] = model.earlyRouting();
  const ref = referenceForward(planWeights(loaded), ids, { routing: planRoutingRules(loaded.plan), collectSelected: true });
  const E = loaded.plan.config.num_experts;
  expect(early.layer).toBe(1);
  expect(ids.map((_, t) => Array.from(early.ids.subarray(t * E, t * E + early.count[t])))).toEqual(ref.selected![1]);
  await model.dispose();

  const text = await run(generateCommand as never, ['generate', sparse, '--prompt', 'And God said', '--max-new-tokens', '8', '--seed', '1', '--threads', '1']);
  expect(text.length).toBeGreaterThan(0);
  const evaluated = JSON.parse(
    (await run(evalCommand as never, ['eval', sparse, '--json', '--context', '32'])).split('\n').filter((l) => l.startsWith('{')).pop()!,
  );
  expect(evaluated.loss).toBeGreaterThan(0);
  expect(evaluated.loss).toBeLessThan(Math.log(257) + 1);

  const out = path.join(root, 'report');
  await run(reportCommand as never, ['report', '--sparse', sparse, '--out', out, '--batch', '1', '--repeats', '1', '--no-peer', '--no-sweep', '--eval-tokens', '256', '--prompt-len', '8', '--decode-steps', '2', '--reference-windows', '1', '--threads', '1']);
  const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
  expect(md).toMatch(/1 pool of routed experts for 2 layers, so the model stores \S+ parameters where one set of experts per layer would store \S+/);
  expect(md).toContain("layer 1 routes on the previous layer's post-attention-norm output");
  const json = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
  const stored = parameterCounts(checkpoint.config).total; // one pool of 4 experts of 3·32·16 fewer than unshared
  expect(parameterCounts({ ...checkpoint.config, experts_shared_frequency: 1 }).total - stored).toBe(4 * 3 * 32 * 16);
  expect(json.params.sparse.total).toBe(stored);
}, 600_000); // generous: the shared build machine runs at load 20+
