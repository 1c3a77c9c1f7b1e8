/** `dsmoe sample`: tfjs generation through the shared sampler contract (src/sampling), one counter per new token. */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { sampleCommand } from '../../../src/cli/commands/sample';
import { loadDenseModel } from '../../../src/train/load_dense_model';
import { sampleToken } from '../../../src/sampling';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../../helpers/dense_fixtures';

let dir: string;
beforeAll(() => {
  dir = path.join(tempDir('samplecmd'), 'dense');
  writeDenseFolder(dir, tinyConfig, randomDenseWeights(tinyConfig, 3, 1.5));
});
afterAll(removeTempDirs);

type Args = { temperature: number; 'top-p': number; seed: number; 'max-new-tokens': number };

async function run(args: Args): Promise<string> {
  const written: string[] = [];
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const warn = jest.spyOn(console, 'warn').mockImplementation(() => {}); // tfjs's one-time "install tfjs-node" note
  try {
    const argv = { 'dense-dir': dir, prompt: 'ab', backend: 'cpu', ...args, _: [], $0: 'dsmoe' };
    await sampleCommand.handler(argv as unknown as Parameters<typeof sampleCommand.handler>[0]); // the handler reads the kebab-case keys only
  } finally {
    out.mockRestore();
    err.mockRestore();
    warn.mockRestore();
  }
  return written.join('');
}

/** The same generation written out: the model's last logits row, the reference sampler, counter = token index. */
function expected(args: Args): string {
  const loaded = loadDenseModel(dir);
  const ids = loaded.tokenizer.encode('ab');
  const start = ids.length;
  for (let counter = 0; counter < args['max-new-tokens']; counter++) {
    const context = Int32Array.from(ids);
    const logits = tf.tidy(() => loaded.model.forward(context, 1, context.length).logits.slice([context.length - 1, 0], [1, tinyConfig.vocab_size]).dataSync()) as Float32Array;
    const next = sampleToken(logits, { temperature: args.temperature, topP: args['top-p'] }, args.seed, counter);
    if (next === loaded.tokenizer.eosId) break;
    ids.push(next);
  }
  loaded.dispose();
  return 'ab' + loaded.tokenizer.decode(ids.slice(start)) + '\n';
}

test('draws token n with u(seed, n), greedy at temperature 0', async () => {
  for (const args of [
    { temperature: 1.2, 'top-p': 0.9, seed: -7, 'max-new-tokens': 6 },
    { temperature: 0, 'top-p': 0.95, seed: 0, 'max-new-tokens': 4 },
  ]) {
    expect(await run(args)).toBe(expected(args));
  }
  const a = await run({ temperature: 1.2, 'top-p': 1, seed: 1, 'max-new-tokens': 6 });
  expect(await run({ temperature: 1.2, 'top-p': 1, seed: 1, 'max-new-tokens': 6 })).toBe(a);
});

test('a bad seed or top-p is a one-line error naming the flag', async () => {
  await expect(run({ temperature: 1, 'top-p': 0.9, seed: 0.5, 'max-new-tokens': 1 })).rejects.toThrow(/^--seed must be an integer/);
  await expect(run({ temperature: 1, 'top-p': 1.5, seed: 0, 'max-new-tokens': 1 })).rejects.toThrow(/^--top-p must be in \(0, 1\]/);
});
