/**
 * `dsmoe train <recipe> --engine torch`: the same recipe trained by the PyTorch engine (`engines/torch/`) under
 * torchrun, DDP over processes and machines. This side resolves the recipe, reads the prepared data (both engines
 * train on its batch order), writes the run spec the engine reads — the model shape, the optimizer settings, the
 * checkpoint's config.json and the tensor names from the tensor table — and launches torchrun
 * (`python3 -m dsmoe_torch.launch`, which is `python3 -m torch.distributed.run` with a fix for Debian's torch 1.13
 * on Python 3.11). The engine writes the dense checkpoint folder of docs/design.md §2.
 */
import { spawn, spawnSync } from 'child_process';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { writeJsonAtomic } from '../checkpoint/atomic';
import { checkpointConfigFiles } from '../checkpoint/dense';
import { packageRoot, type PreparedFolder } from '../data';
import { UserError } from '../errors';
import { attentionExperts } from '../model/config';
import { paramSpecs } from '../model/params';
import { denseTensors } from '../plan/tensor_table';
import { recipeHash, type Recipe } from '../recipe';
import { checkpointConfigExtra, modelConfigFor } from './trainer';

export const TORCH_SPEC_FORMAT = 'dsmoe-torch-run';
export const TORCH_SPEC_VERSION = 1;
export const torchSpecFile = 'torch_run.json';
export const DEFAULT_PYTHON = '/usr/bin/python3';

export interface TorchRunOptions {
  recipe: Recipe;
  prepared: PreparedFolder;
  outDir: string;
  resume: boolean;
  maxSteps: number;
  /** end after this many more steps with a checkpoint (tests) */
  stopAfterSteps?: number;
  device: 'cpu' | 'cuda';
  precision: 'f32' | 'bf16';
  parallel: 'ddp' | 'fsdp';
  activationCheckpointing: boolean;
  /** ZeRO-1: AdamW moments sharded over the processes (torch.distributed.optim.ZeroRedundancyOptimizer) */
  shardOptimizer?: boolean;
}

export interface TorchLaunch {
  python: string;
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
}

/** The run spec `engines/torch/dsmoe_torch/train.py` reads. */
export function torchRunSpec(options: TorchRunOptions): Record<string, unknown> {
  const { recipe, prepared } = options;
  const config = modelConfigFor(recipe, prepared.tokenizer);
  if (recipe.routing.mode !== 'dense') {
    throw new UserError(`${recipe.file}: routing.mode ${recipe.routing.mode}: the torch engine trains dense DS-MoE routing only (use --engine tfjs)`);
  }
  if (recipe.routing.z_loss_alpha) {
    throw new UserError(`${recipe.file}: routing.z_loss_alpha ${recipe.routing.z_loss_alpha}: the torch engine has no router z-loss (use --engine tfjs)`);
  }
  if (attentionExperts(config) > 0) {
    throw new UserError(`${recipe.file}: model.attention_experts ${config.attention_experts}: the torch engine does not train attention experts (MoA) yet (use --engine tfjs)`);
  }
  if ((config.first_k_dense_replace ?? 0) > 0) {
    throw new UserError(`${recipe.file}: model.first_k_dense_replace ${config.first_k_dense_replace}: the torch engine does not train dense MLP layers yet (use --engine tfjs)`);
  }
  const decayed = new Map(paramSpecs(config).map((s) => [s.name, s.decay]));
  const files = checkpointConfigFiles(config, prepared.tokenizer.eosId, checkpointConfigExtra(recipe, 0));
  return {
    format: TORCH_SPEC_FORMAT,
    version: TORCH_SPEC_VERSION,
    recipe: { name: recipe.name, file: recipe.file, hash: recipeHash(recipe), seed: recipe.seed },
    prepared: path.resolve(prepared.dir),
    out: path.resolve(options.outDir),
    resume: options.resume,
    max_steps: options.maxSteps,
    stop_after_steps: options.stopAfterSteps ?? null,
    model: config,
    routing: { mode: recipe.routing.mode, mi_alpha: recipe.routing.mi_alpha },
    train: recipe.train,
    device: options.device,
    precision: options.precision,
    parallel: options.parallel,
    activation_checkpointing: options.activationCheckpointing,
    shard_optimizer: options.shardOptimizer ?? false,
    hf_config: files.config,
    generation_config: files.generation,
    // Every tensor of the checkpoint in file order; `trained: false` is the zero shared-expert gate of a model
    // without a shared expert. Decay as the tfjs trainer: matrices only.
    tensors: denseTensors(config).map((t) => ({
      name: t.name,
      shape: t.shape,
      trained: t.training !== null,
      decay: t.training !== null && decayed.get(t.training.param) === true,
    })),
  };
}

/** A TCP port free on localhost now (the OS picks it), for a one-machine rendezvous. */
function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free local port'))));
    });
  });
}

/** Checks that `python` runs and imports torch; returns torch's version or throws one line saying what to install. */
export function checkTorch(python: string): string {
  const result = spawnSync(python, ['-c', 'import torch, sys; sys.stdout.write(torch.__version__)'], { encoding: 'utf8' });
  if (result.error) {
    throw new UserError(`--engine torch: cannot run ${python} (${(result.error as NodeJS.ErrnoException).code ?? result.error.message}); install Python 3 and PyTorch (Debian: apt-get install -y python3-torch libopenblas0-pthread) or pass --python`);
  }
  if (result.status !== 0) {
    const last = (result.stderr || '').trim().split('\n').pop() ?? '';
    throw new UserError(`--engine torch: ${python} cannot import torch (${last}); install PyTorch (Debian: apt-get install -y python3-torch libopenblas0-pthread) or pass --python`);
  }
  return result.stdout.trim();
}

/**
 * The torchrun command line: `python -m dsmoe_torch.launch [rendezvous] -m dsmoe_torch.train --spec FILE`. One
 * machine: `--standalone`, or with `localPort` the same rendezvous (c10d on localhost, a fresh id) on that port,
 * because torch 1.13's `--standalone` always binds 29400 and a second run on the machine would fail to start.
 */
export function torchrunArgs(launch: TorchLaunch, specPath: string, localPort?: number): string[] {
  const args = ['-m', 'dsmoe_torch.launch', `--nproc_per_node=${launch.nprocPerNode}`, `--nnodes=${launch.nnodes}`];
  if (launch.nnodes > 1) {
    args.push(`--node_rank=${launch.nodeRank}`, `--master_addr=${launch.masterAddr}`, `--master_port=${launch.masterPort}`);
  } else if (localPort !== undefined) {
    args.push('--rdzv_backend=c10d', `--rdzv_endpoint=localhost:${localPort}`, `--rdzv_id=${randomUUID()}`);
  } else {
    args.push('--standalone');
  }
  args.push('-m', 'dsmoe_torch.train', '--spec', specPath);
  return args;
}

export function validateLaunch(launch: TorchLaunch, batchSize: number): void {
  const positive = (flag: string, value: number) => {
    if (!Number.isInteger(value) || value <= 0) throw new UserError(`${flag} must be a positive integer, got ${value}`);
  };
  positive('--nproc-per-node', launch.nprocPerNode);
  positive('--nnodes', launch.nnodes);
  if (!Number.isInteger(launch.nodeRank) || launch.nodeRank < 0 || launch.nodeRank >= launch.nnodes) {
    throw new UserError(`--node-rank must be an integer in 0..${launch.nnodes - 1}, got ${launch.nodeRank}`);
  }
  if (!Number.isInteger(launch.masterPort) || launch.masterPort <= 0 || launch.masterPort > 65535) {
    throw new UserError(`--master-port must be a port number, got ${launch.masterPort}`);
  }
  const world = launch.nprocPerNode * launch.nnodes;
  if (batchSize % world !== 0) {
    throw new UserError(`train.batch_size ${batchSize} is not a multiple of the ${world} processes (--nproc-per-node × --nnodes): every micro-batch is split evenly over them`);
  }
}

/**
 * Writes the spec into the output folder and runs torchrun, its output on this terminal. Ctrl-C reaches torchrun
 * and its workers directly (one process group), which finish the step and save; SIGTERM to dsmoe is passed on to
 * torchrun, which passes it to the workers. Resolves with the exit status (130 when interrupted by a signal).
 */
export async function launchTorchEngine(
  options: TorchRunOptions,
  launch: TorchLaunch,
  /** receives the engine's output instead of this terminal (tests) */
  output?: (text: string) => void,
): Promise<number> {
  const spec = torchRunSpec(options);
  fs.mkdirSync(options.outDir, { recursive: true });
  const specPath = path.join(path.resolve(options.outDir), torchSpecFile);
  writeJsonAtomic(specPath, spec);
  const enginePath = path.join(packageRoot(), 'engines', 'torch');
  const env = { ...process.env, PYTHONPATH: [enginePath, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) };
  const localPort = launch.nnodes > 1 ? undefined : await freeLocalPort();
  const child = spawn(launch.python, torchrunArgs(launch, specPath, localPort), { stdio: output ? ['ignore', 'pipe', 'pipe'] : 'inherit', env });
  if (output) {
    child.stdout?.on('data', (chunk: Buffer) => output(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => output(chunk.toString()));
  }
  let signalled = false;
  const onInterrupt = () => {
    signalled = true; // the terminal sent SIGINT to the whole group: the workers save and exit
  };
  const onTerminate = () => {
    signalled = true;
    child.kill('SIGTERM');
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onTerminate);
  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', (error) => reject(new UserError(`cannot start ${launch.python}: ${error.message}`)));
      child.on('exit', (status, signal) => resolve(status ?? (signal ? 128 + 15 : 1)));
    });
    return signalled ? 130 : code;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    process.removeListener('SIGTERM', onTerminate);
  }
}
