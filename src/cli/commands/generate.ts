import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { encodePrompt } from '../../data/tokenizer';
import { loadAnyTokenizer } from '../../interop/hf_tokenizer';
import { SparseModel } from '../../runtime/model';
import { formatExpertCacheStats } from '../../runtime/expert_cache';
import { expertCacheFromArgs, withExpertCacheFlags, type ExpertCacheArgs } from '../expert_cache_flags';
import { deviceOption, type Device } from '../device_option';
import { residencyFromArgs, residencyOption } from '../residency_option';

interface GenerateArgs extends ExpertCacheArgs {
  model: string;
  prompt: string;
  'max-new-tokens': number;
  temperature: number;
  'top-p': number;
  seed: number;
  threads?: number;
  dense: boolean;
  device: Device;
  residency?: string;
}

/** `dsmoe generate <plan-dir> --prompt TEXT`: samples a continuation on the native runtime, streaming it to stdout. */
export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate <model>',
  describe: 'Generate text from a sparse plan folder on the native runtime (streams to stdout)',
  builder: (yargs) =>
    withExpertCacheFlags(yargs)
      .positional('model', { type: 'string', demandOption: true, describe: 'sparse plan folder (dsmoe convert output)' })
      .option('prompt', { type: 'string', demandOption: true, describe: 'text to continue' })
      .option('max-new-tokens', { type: 'number', default: 128, describe: 'tokens to generate at most' })
      .option('temperature', { type: 'number', default: 0.8, describe: 'softmax temperature; 0 = greedy' })
      .option('top-p', { type: 'number', default: 0.95, describe: 'nucleus sampling mass in (0, 1]' })
      .option('seed', { type: 'number', default: 0, describe: 'sampling seed: the same seed gives the same text' })
      .option('threads', { type: 'number', describe: 'CPU threads (default: all cores)' })
      .option('dense', { type: 'boolean', default: false, describe: 'use every kept expert (the dense baseline) instead of the plan' })
      .option('device', deviceOption('auto'))
      .option('residency', residencyOption()) as never,
  handler: async (args) => {
    const model = SparseModel.load(args.model, {
      threads: args.threads,
      device: args.device,
      expertCache: expertCacheFromArgs(args),
      residency: residencyFromArgs(args),
    }); // validates the plan folder first
    process.stderr.write(`device: ${model.device}\n`);
    try {
      const tokenizer = loadAnyTokenizer(args.model); // dsmoe's own or an imported model's
      if (args.dense) model.setMode('dense');
      const prompt = encodePrompt(tokenizer, args.prompt); // with the BOS of tokenizers that add one, as transformers' generate gets it
      if (tokenizer.vocabSize > model.vocabSize) {
        throw new UserError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.vocabSize}`);
      }
      if (prompt.length === 0) throw new UserError('--prompt is empty');
      if (prompt.length >= model.maxContext) {
        throw new UserError(`the prompt is ${prompt.length} tokens; the model's context is ${model.maxContext}`);
      }
      // Tokens are written as their bytes, so characters split across byte-level tokens come out whole.
      const generated = await model.generate(prompt, {
        maxNewTokens: args['max-new-tokens'],
        temperature: args.temperature,
        topP: args['top-p'],
        seed: args.seed,
        stopAtEos: tokenizer.eosId,
        onToken: (id) => {
          if (id !== tokenizer.eosId && id < tokenizer.vocabSize) process.stdout.write(Buffer.from(tokenizer.tokenBytes(id)));
        },
      });
      process.stdout.write('\n');
      const cache = model.expertCacheStats();
      if (cache) process.stderr.write(formatExpertCacheStats(cache) + '\n');
      const stoppedByContext =
        generated.length < args['max-new-tokens'] && generated[generated.length - 1] !== tokenizer.eosId;
      if (stoppedByContext) {
        process.stderr.write(
          `generate: stopped after ${generated.length} new tokens at the model's context of ${model.maxContext} tokens\n`,
        );
      }
    } finally {
      await model.dispose();
    }
  },
};
