import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { BackendChoice, backendChoices, describeBackend, selectBackend } from '../../train/backend';
import { loadDenseModel } from '../../train/load_dense_model';
import { Sampler } from '../../sampling';

interface SampleArgs {
  'dense-dir': string;
  prompt: string;
  'max-new-tokens': number;
  temperature: number;
  'top-p': number;
  seed: number;
  backend: BackendChoice;
}

export const sampleCommand: CommandModule<object, SampleArgs> = {
  command: 'sample <dense-dir>',
  describe: 'Generate text with the dense tfjs model (all experts): a sanity check of a trained checkpoint',
  builder: (yargs) =>
    yargs
      .positional('dense-dir', { type: 'string', demandOption: true, describe: 'dense checkpoint folder' })
      .option('prompt', { type: 'string', demandOption: true, describe: 'text to continue' })
      .option('max-new-tokens', { type: 'number', default: 200 })
      .option('temperature', { type: 'number', default: 0.8, describe: '0 = greedy' })
      .option('top-p', { type: 'number', default: 0.95, describe: 'nucleus sampling mass' })
      .option('seed', { type: 'number', default: 0, describe: 'sampling seed: the same seed gives the same text as dsmoe generate would from the same logits' })
      .option('backend', { type: 'string', choices: backendChoices, default: 'auto' }) as never,
  handler: async (args) => {
    const maxNew = args['max-new-tokens'];
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new UserError(`--max-new-tokens must be a non-negative integer, got ${maxNew}`);
    if (!(args.temperature >= 0)) throw new UserError(`--temperature must be ≥ 0, got ${args.temperature}`);
    let sampler: Sampler;
    try {
      sampler = new Sampler({ temperature: args.temperature, topP: args['top-p'], seed: args.seed });
    } catch (error) {
      throw new UserError(`--${(error as Error).message.replace(/^topP/, 'top-p')}`);
    }
    const backend = await selectBackend(args.backend);
    process.stderr.write(describeBackend(backend) + '\n');
    const loaded = loadDenseModel(path.resolve(args['dense-dir']));
    const { model, tokenizer } = loaded;
    const ids = tokenizer.encode(args.prompt);
    if (ids.length === 0) ids.push(tokenizer.eosId); // an empty prompt starts a new document
    const promptLength = ids.length;
    const window = model.config.max_position_embeddings;
    for (let i = 0; i < maxNew; i++) {
      // No KV cache: the whole (truncated) context is recomputed each token; fine for a sanity check.
      const context = Int32Array.from(ids.slice(-window));
      const logits = tf.tidy(() => {
        const out = model.forward(context, 1, context.length);
        return out.logits.slice([context.length - 1, 0], [1, model.config.vocab_size]).dataSync(); // [V]
      });
      const next = sampler.sample(logits as Float32Array);
      if (next === tokenizer.eosId) break;
      ids.push(next);
    }
    loaded.dispose();
    process.stdout.write(args.prompt + tokenizer.decode(ids.slice(promptLength)) + '\n');
  },
};
