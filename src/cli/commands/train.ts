import * as fs from 'fs';
import * as path from 'path';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { loadRecipe, type Recipe } from '../../recipe';
import { loadTokenizer, prepareData, readPreparedData, writePreparedData, type PreparedFolder, type Tokenizer } from '../../data';
import { BackendChoice, backendChoices, describeBackend, selectBackend } from '../../train/backend';
import { train } from '../../train/trainer';
import { applyKernelChoice, computeDtypes, describeKernels, kernelChoices, KernelChoice, type ComputeDtype } from '../../train/native_kernels';
import { describeMemory, torchTrainingMemory } from '../../model/memory_estimate';
import { checkTorch, DEFAULT_PYTHON, launchTorchEngine, torchrunArgs, validateLaunch } from '../../train/torch_engine';

interface TrainArgs {
  recipe: string;
  out?: string;
  resume: boolean;
  'max-steps'?: number;
  engine: 'tfjs' | 'torch';
  data?: string;
  'init-only': boolean;
  backend: BackendChoice;
  kernels: KernelChoice;
  'compute-dtype'?: ComputeDtype;
  'nproc-per-node': number;
  nnodes: number;
  'node-rank': number;
  'master-addr': string;
  'master-port': number;
  device: 'cpu' | 'cuda';
  precision: 'f32' | 'bf16';
  parallel: 'ddp' | 'fsdp';
  'activation-checkpointing': boolean;
  'shard-optimizer': boolean;
  python: string;
  'dry-run': boolean;
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
      .option('engine', {
        type: 'string',
        choices: ['tfjs', 'torch'],
        default: 'tfjs',
        describe: 'tfjs = this process; torch = the PyTorch engine (engines/torch) under torchrun, DDP over processes and machines',
      })
      .option('data', {
        type: 'string',
        describe: 'prepared data folder (dsmoe prepare) to train on; torch default <out>/prepared, written when missing',
      })
      .option('init-only', { type: 'boolean', default: false, describe: 'tfjs: write the initial weights (step 0) to --out and stop' })
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
      })
      .option('compute-dtype', {
        type: 'string',
        choices: computeDtypes,
        describe: "native kernels' matrix products: bf16 = bf16 operands, f32 sums and master weights (AVX-512 BF16 CPUs); default the recipe's train.compute_dtype (f32)",
      })
      .option('nproc-per-node', { type: 'number', default: 1, describe: 'torch: processes on this machine (one per GPU)' })
      .option('nnodes', { type: 'number', default: 1, describe: 'torch: machines in the run' })
      .option('node-rank', { type: 'number', default: 0, describe: 'torch: this machine, 0..nnodes−1' })
      .option('master-addr', { type: 'string', default: '127.0.0.1', describe: 'torch: address of the node-rank 0 machine' })
      .option('master-port', { type: 'number', default: 29500, describe: 'torch: rendezvous port on the node-rank 0 machine' })
      .option('device', { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', describe: 'torch: gloo on CPU, NCCL on CUDA' })
      .option('precision', { type: 'string', choices: ['f32', 'bf16'], default: 'f32', describe: 'torch: bf16 autocast (CUDA only)' })
      .option('parallel', { type: 'string', choices: ['ddp', 'fsdp'], default: 'ddp', describe: 'torch: DDP (FSDP is detected and reported, not yet used)' })
      .option('activation-checkpointing', { type: 'boolean', default: false, describe: 'torch: recompute each decoder layer in backward' })
      .option('shard-optimizer', { type: 'boolean', default: false, describe: 'torch: AdamW moments sharded over the processes (ZeRO-1)' })
      .option('python', { type: 'string', default: DEFAULT_PYTHON, describe: 'torch: the Python that has PyTorch' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'torch: print the processes, memory per process and torchrun command, then stop' }) as never,
  handler: async (args) => {
    const maxStepsFlag = args['max-steps'];
    if (maxStepsFlag !== undefined && (!Number.isInteger(maxStepsFlag) || maxStepsFlag <= 0)) {
      throw new UserError(`--max-steps must be a positive integer, got ${maxStepsFlag}`);
    }
    const recipe = loadRecipe(args.recipe);
    const outDir = path.resolve(args.out ?? path.join('checkpoints', recipe.name, 'dense'));
    // A resumed run keeps the tokenizer it was trained with (a BPE vocabulary is not retrained).
    const savedTokenizer = args.resume && fs.existsSync(path.join(outDir, 'tokenizer.json')) ? loadTokenizer(outDir) : undefined;
    if (args.engine === 'torch') {
      if (args['compute-dtype']) throw new UserError('--compute-dtype sets the tfjs engine\'s native products; the torch engine takes --precision f32|bf16');
      if (args['init-only']) throw new UserError('--init-only writes tfjs initial weights: use it with --engine tfjs, then --engine torch --resume');
      const code = await trainWithTorch(args, recipe, outDir, savedTokenizer, maxStepsFlag);
      if (code !== 0) process.exit(code);
      return;
    }
    const maxSteps = maxStepsFlag;
    const { tokenizer, dataset } = args.data
      ? readPreparedData(path.resolve(args.data), recipe, { steps: maxSteps ?? resumedMaxSteps(args.resume, outDir) ?? recipe.train.max_steps })
      : prepareData(recipe, { tokenizer: savedTokenizer });
    const backend = await selectBackend(args.backend);
    process.stderr.write(describeBackend(backend) + '\n');
    // After the backend is set up: importing a backend registers its own kernels over ours.
    const compute = args['compute-dtype'] ?? recipe.train.compute_dtype ?? 'f32';
    const kernels = applyKernelChoice(args.kernels, backend.tfjsName, undefined, compute);
    process.stderr.write(describeKernels(kernels) + '\n');
    const stopAfterSteps = args['init-only'] ? 0 : undefined;
    if (args['init-only'] && args.resume) throw new UserError('--init-only writes a fresh run\'s step-0 weights; it cannot be combined with --resume');
    const result = await train({ recipe, tokenizer, dataset, outDir, resume: args.resume, maxSteps, stopAfterSteps, backendName: backend.name });
    const summary = result.finalEval
      ? `held-out loss ${result.finalEval.loss.toFixed(4)}, ${result.finalEval.bits_per_byte.toFixed(3)} bits/byte ` +
        `(byte unigram entropy ${dataset.unigramEntropyBits().toFixed(3)})`
      : `stopped at step ${result.step}/${result.maxSteps}`;
    process.stdout.write(`${result.outDir}: ${summary}\n`);
    if (result.interrupted) process.exit(130);
  },
};

/** The schedule length a resumed run keeps (trainer_state.json), or undefined for a fresh run. */
function resumedMaxSteps(resume: boolean, outDir: string): number | undefined {
  const file = path.join(outDir, 'trainer_state.json');
  if (!resume) return undefined;
  if (!fs.existsSync(file)) throw new UserError(`${outDir}: no checkpoint to resume (trainer_state.json is missing)`);
  const steps = (JSON.parse(fs.readFileSync(file, 'utf8')) as { max_steps?: unknown }).max_steps;
  if (!Number.isInteger(steps) || (steps as number) <= 0) throw new UserError(`${file}: max_steps must be a positive integer, got ${JSON.stringify(steps)}`);
  return steps as number;
}

async function trainWithTorch(
  args: TrainArgs,
  recipe: Recipe,
  outDir: string,
  savedTokenizer: Tokenizer | undefined,
  maxStepsFlag: number | undefined,
): Promise<number> {
  const launch = {
    python: args.python,
    nprocPerNode: args['nproc-per-node'],
    nnodes: args.nnodes,
    nodeRank: args['node-rank'],
    masterAddr: args['master-addr'],
    masterPort: args['master-port'],
  };
  validateLaunch(launch, recipe.train.batch_size);
  if (args.precision === 'bf16' && args.device !== 'cuda') throw new UserError('--precision bf16 needs --device cuda (the CPU engine trains in f32)');
  const processes = launch.nprocPerNode * launch.nnodes;
  const memory = torchTrainingMemory(recipe.model, {
    tokensPerProcess: (recipe.train.batch_size / processes) * recipe.data.seq_len,
    bf16: args.precision === 'bf16',
    activationCheckpointing: args['activation-checkpointing'],
    shardOptimizerOver: args['shard-optimizer'] ? processes : 1,
  });
  const memoryLine = `memory per process ${describeMemory(memory)}`;
  if (args['dry-run']) {
    process.stdout.write(
      `${recipe.name}: ${processes} process(es) (${launch.nprocPerNode} per machine × ${launch.nnodes}), ` +
        `${recipe.train.batch_size / processes} of ${recipe.train.batch_size} windows of each micro-batch per process, device ${args.device}, ${args.precision}\n` +
        `${memoryLine}\n${args.python} ${torchrunArgs(launch, path.join(outDir, 'torch_run.json')).join(' ')}\n`,
    );
    return 0;
  }
  const version = checkTorch(args.python);
  const maxSteps = maxStepsFlag ?? resumedMaxSteps(args.resume, outDir) ?? recipe.train.max_steps;
  const dataDir = path.resolve(args.data ?? path.join(outDir, 'prepared'));
  let prepared: PreparedFolder | undefined;
  if (fs.existsSync(path.join(dataDir, 'prepared.json'))) {
    try {
      prepared = readPreparedData(dataDir, recipe, { steps: maxSteps });
    } catch (error) {
      if (args.data) throw error; // the user's folder: say what is wrong with it
    }
  } else if (args.data) {
    throw new UserError(`--data ${args.data}: not a prepared data folder (no prepared.json); make one with dsmoe prepare`);
  }
  if (!prepared) {
    process.stderr.write(`preparing data in ${dataDir}\n`);
    prepared = writePreparedData(dataDir, recipe, { steps: maxSteps, tokenizer: savedTokenizer });
  }
  if (savedTokenizer && savedTokenizer.vocabSize !== prepared.tokenizer.vocabSize) {
    throw new UserError(`${dataDir}: its tokenizer has ${prepared.tokenizer.vocabSize} tokens, the checkpoint's ${savedTokenizer.vocabSize}`);
  }
  process.stderr.write(`engine torch ${version} (${args.python}), ${processes} process(es), device ${args.device}; ${memoryLine}\n`);
  return launchTorchEngine(
    {
      recipe,
      prepared,
      outDir,
      resume: args.resume,
      maxSteps,
      device: args.device,
      precision: args.precision,
      parallel: args.parallel,
      activationCheckpointing: args['activation-checkpointing'],
      shardOptimizer: args['shard-optimizer'],
    },
    launch,
  );
}
