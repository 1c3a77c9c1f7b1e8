import * as path from 'path';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { loadRecipe } from '../../recipe';
import { writePreparedData } from '../../data';

interface PrepareArgs {
  recipe: string;
  out?: string;
  'max-steps'?: number;
}

/**
 * `dsmoe prepare <recipe> --out DIR`: tokenizer, token ids and batch order written once (src/data/prepared_data.ts),
 * read by `dsmoe train --data DIR` and by the PyTorch engine, so every engine trains on the same batches.
 */
export const prepareCommand: CommandModule<object, PrepareArgs> = {
  command: 'prepare <recipe>',
  describe: 'Tokenize a recipe\'s corpus and write its batch order (token ids .bin + JSON) for any training engine',
  builder: (yargs) =>
    yargs
      .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe file (.yaml or .json)' })
      .option('out', { type: 'string', describe: 'output folder (default checkpoints/<name>/prepared)' })
      .option('max-steps', { type: 'number', describe: "optimizer steps the batch order covers instead of the recipe's" }) as never,
  handler: (args) => {
    const steps = args['max-steps'];
    if (steps !== undefined && (!Number.isInteger(steps) || steps <= 0)) {
      throw new UserError(`--max-steps must be a positive integer, got ${steps}`);
    }
    const recipe = loadRecipe(args.recipe);
    const outDir = path.resolve(args.out ?? path.join('checkpoints', recipe.name, 'prepared'));
    const started = performance.now();
    const { meta } = writePreparedData(outDir, recipe, { steps, onProgress: (line) => process.stderr.write(line + '\n') });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `${outDir}: ${meta.tokens.count} tokens (vocabulary ${meta.vocab_size}), ${meta.steps} steps × ${meta.grad_accum} ` +
        `micro-batches × ${meta.batch_size} windows of ${meta.seq_len}, ${meta.validation.starts.length} held-out windows (${seconds} s)\n`,
    );
  },
};
