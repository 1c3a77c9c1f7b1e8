import * as fs from 'fs';
import * as path from 'path';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { loadRecipe } from '../../recipe';
import { loadTokenizer, prepareData } from '../../data';
import { BackendChoice, backendChoices, describeBackend, selectBackend } from '../../train/backend';
import { train } from '../../train/trainer';
import { applyKernelChoice, describeKernels, kernelChoices, KernelChoice } from '../../train/native_kernels';

interface TrainArgs {
  recipe: string;
  out?: string;
  resume: boolean;
  'max-steps'?: number;
  backend: BackendChoice;
  kernels: KernelChoice;
}

export const trainCommand: CommandModule<object, TrainArgs> = {
  command: 'train <recipe>',
  describe: 'Train a DS-MoE model from a recipe; writes a dense Qwen2-MoE checkpoint folder',
  builder: (yargs) =>
    yargs
      .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe file (.yaml or .json)' })
      .option('out', { type: 'string', describe: 'checkpoint folder (default checkpoints/<name>/dense)' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue from the checkpoint in --out' })
      .option('max-steps', { type: 'number', describe: "total optimizer steps (and schedule length) instead of the recipe's" })
      .option('backend', {
        type: 'string',
        choices: backendChoices,
        default: 'auto',
        describe: 'tfjs backend: auto = node-gpu > node > wasm > cpu, the first that loads',
      })
      .option('kernels', {
        type: 'string',
        choices: kernelChoices,
        default: 'auto',
        describe: "matrix products: native = the addon's multithreaded kernels inside tfjs (wasm/cpu), tfjs = tfjs's own",
      }) as never,
  handler: async (args) => {
    const maxSteps = args['max-steps'];
    if (maxSteps !== undefined && (!Number.isInteger(maxSteps) || maxSteps <= 0)) {
      throw new UserError(`--max-steps must be a positive integer, got ${maxSteps}`);
    }
    const recipe = loadRecipe(args.recipe);
    const outDir = path.resolve(args.out ?? path.join('checkpoints', recipe.name, 'dense'));
    // A resumed run keeps the tokenizer it was trained with (a BPE vocabulary is not retrained).
    const savedTokenizer = args.resume && fs.existsSync(path.join(outDir, 'tokenizer.json')) ? loadTokenizer(outDir) : undefined;
    const { tokenizer, dataset } = prepareData(recipe, { tokenizer: savedTokenizer });
    const backend = await selectBackend(args.backend);
    process.stderr.write(describeBackend(backend) + '\n');
    // After the backend is set up: importing a backend registers its own kernels over ours.
    const kernels = applyKernelChoice(args.kernels, backend.tfjsName);
    process.stderr.write(describeKernels(kernels) + '\n');
    const result = await train({ recipe, tokenizer, dataset, outDir, resume: args.resume, maxSteps, backendName: backend.name });
    const summary = result.finalEval
      ? `held-out loss ${result.finalEval.loss.toFixed(4)}, ${result.finalEval.bits_per_byte.toFixed(3)} bits/byte ` +
        `(byte unigram entropy ${dataset.unigramEntropyBits().toFixed(3)})`
      : `stopped at step ${result.step}/${result.maxSteps}`;
    process.stdout.write(`${result.outDir}: ${summary}\n`);
    if (result.interrupted) process.exit(130);
  },
};
