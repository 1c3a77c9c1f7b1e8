/**
 * Training throughput with tfjs's kernels vs the addon's kernels inside tfjs (docs/training-kernels.md), and a
 * PyTorch peer on the same model, batch and thread count.
 *
 *   node dist/bench/train_kernels.js [--recipe tiny|small|FILE ...] [--steps N] [--kernels tfjs,native] [--compute-dtype f32,bf16]
 *                                    [--backend wasm|cpu] [--threads N] [--peer] [--profile] [--json]
 *                                    [--batch B] [--peer-dtypes f32,bf16]
 *
 * Each measurement: one warm-up step (kernel setup, wasm heap growth), then N timed optimizer steps of the trainer's
 * step (forward, backward through tf.variableGrads, global-norm clip, AdamW). Prints tokens/s and achieved
 * GFLOP/s = 6 × parameters × tokens/s next to the addon's measured FMA peak.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { parameterCounts } from '../model/config';
import { MoEModel, RoutingOptions } from '../model/model';
import { disposeParams, initParams, ParamMap, paramSpecs } from '../model/params';
import { loadRecipe, Recipe } from '../recipe';
import { loadNative } from '../runtime/native';
import { AdamW, clipScale } from '../train/adamw';
import { selectBackend, BackendChoice } from '../train/backend';
import { bf16Unsupported, ComputeDtype, computeDtypes, KernelTime, KernelTimer, ProductTime, registerNativeKernels, restoreTfjsKernels } from '../train/native_kernels';
import { runPytorchPeer, PeerResult } from './train_peer';

/** One optimizer step exactly as the trainer takes it (grad_accum 1): loss, gradients, clip, AdamW. */
export class TrainingStepHarness {
  readonly model: MoEModel;
  private readonly optimizer: AdamW;
  private readonly variables: tf.Variable[];

  constructor(
    readonly recipe: Recipe,
    private readonly params: ParamMap = initParams(recipe.model, recipe.seed),
  ) {
    this.model = new MoEModel(recipe.model, params);
    const decayed = new Set(paramSpecs(recipe.model).filter((s) => s.decay).map((s) => s.name));
    const t = recipe.train;
    this.optimizer = new AdamW(params, decayed, { beta1: t.beta1, beta2: t.beta2, eps: t.adam_eps, weightDecay: t.weight_decay });
    this.variables = [...params.values()];
  }

  private routing(): RoutingOptions {
    const r = this.recipe.routing;
    return { mode: r.mode, miAlpha: r.mi_alpha, topK: r.top_k, balanceAlpha: r.balance_alpha, miAlphaAttention: r.mi_alpha_attention };
  }

  /** One step on a batch of B·T tokens; returns the loss before the update. */
  step(inputs: Int32Array, targets: Int32Array, lr: number): number {
    const { batch_size: B, grad_clip } = this.recipe.train;
    const T = this.recipe.data.seq_len;
    const names = new Map([...this.params].map(([name, v]) => [v.name, name]));
    const { value, grads } = tf.variableGrads(() => this.model.loss(inputs, targets, B, T, this.routing()).total, this.variables);
    const loss = value.dataSync()[0];
    value.dispose();
    const byName = new Map(Object.entries(grads).map(([varName, g]) => [names.get(varName) as string, g]));
    this.optimizer.apply(this.params, byName, lr, clipScale(byName, grad_clip).scale);
    tf.dispose([...byName.values()]);
    return loss;
  }

  dispose(): void {
    this.model.dispose();
    this.optimizer.dispose();
    disposeParams(this.params);
  }
}

/** Deterministic batches of B windows of T+1 tokens below `vocab` (a fixed pseudo-text: speed does not depend on it). */
export function syntheticBatch(index: number, batch: number, seqLen: number, vocab: number): { inputs: Int32Array; targets: Int32Array } {
  const inputs = new Int32Array(batch * seqLen);
  const targets = new Int32Array(batch * seqLen);
  let state = (index * 2654435761 + 12345) >>> 0;
  for (let b = 0; b < batch; b++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const offset = state % 997;
    for (let t = 0; t <= seqLen; t++) {
      // A repeating, learnable sequence: the next token follows from the previous two.
      const token = ((offset + t) * 7 + ((offset + t) % 13) * 31) % vocab;
      if (t < seqLen) inputs[b * seqLen + t] = token;
      if (t > 0) targets[b * seqLen + t - 1] = token;
    }
  }
  return { inputs, targets };
}

export interface ThroughputRow {
  recipe: string;
  kernels: 'tfjs' | 'native' | 'pytorch';
  /** the native products' arithmetic (native rows) */
  compute?: ComputeDtype;
  backend: string;
  threads: number;
  params: number;
  tokensPerStep: number;
  steps: number;
  secondsPerStep: number;
  tokensPerSecond: number;
  gflops: number; // 6 × params × tokens/s
  note?: string;
  profile?: KernelTime[];
  /** matrix products by shape (with --profile) */
  products?: ProductTime[];
}

/** Times `steps` optimizer steps after one warm-up step. */
export function measureTraining(recipe: Recipe, steps: number, profile: KernelTimer | null): { secondsPerStep: number; losses: number[] } {
  const harness = new TrainingStepHarness(recipe);
  const { batch_size: B } = recipe.train;
  const T = recipe.data.seq_len;
  const losses: number[] = [];
  try {
    const warm = syntheticBatch(0, B, T, recipe.model.vocab_size);
    losses.push(harness.step(warm.inputs, warm.targets, recipe.train.lr));
    profile?.reset();
    const start = performance.now();
    for (let s = 1; s <= steps; s++) {
      const batch = syntheticBatch(s, B, T, recipe.model.vocab_size);
      losses.push(harness.step(batch.inputs, batch.targets, recipe.train.lr));
    }
    return { secondsPerStep: (performance.now() - start) / 1000 / steps, losses };
  } finally {
    harness.dispose();
  }
}

function recipePath(name: string): string {
  return /[./]/.test(name) ? path.resolve(name) : path.resolve(__dirname, '..', '..', 'recipes', `${name}.yaml`);
}

interface BenchArgs {
  recipes: string[];
  steps: number;
  kernels: ('tfjs' | 'native')[];
  backend: BackendChoice;
  threads: number | undefined;
  peer: boolean;
  profile: boolean;
  json: boolean;
  /** sequences per step instead of the recipe's (a quicker profile at the recipe's shapes) */
  batch: number | undefined;
  /** PyTorch peer precisions to run */
  peerDtypes: ('f32' | 'bf16')[];
  /** the native kernels' product arithmetic, one native row each */
  computeDtypes: ComputeDtype[];
}

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { recipes: [], steps: 3, kernels: ['tfjs', 'native'], backend: 'wasm', threads: undefined, peer: false, profile: false, json: false, batch: undefined, peerDtypes: ['f32', 'bf16'], computeDtypes: ['f32'] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--recipe') args.recipes.push(value());
    else if (flag === '--steps') args.steps = Number(value());
    else if (flag === '--kernels') args.kernels = value().split(',') as BenchArgs['kernels'];
    else if (flag === '--backend') args.backend = value() as BackendChoice;
    else if (flag === '--threads') args.threads = Number(value());
    else if (flag === '--peer') args.peer = true;
    else if (flag === '--profile') args.profile = true;
    else if (flag === '--json') args.json = true;
    else if (flag === '--batch') args.batch = Number(value());
    else if (flag === '--peer-dtypes') args.peerDtypes = value().split(',') as BenchArgs['peerDtypes'];
    else if (flag === '--compute-dtype') args.computeDtypes = value().split(',') as ComputeDtype[];
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.recipes.length) args.recipes = ['tiny', 'small'];
  if (!(Number.isInteger(args.steps) && args.steps >= 1)) throw new Error('--steps must be a positive integer');
  for (const k of args.kernels) if (k !== 'tfjs' && k !== 'native') throw new Error(`--kernels: unknown ${k}`);
  for (const d of args.peerDtypes) if (d !== 'f32' && d !== 'bf16') throw new Error(`--peer-dtypes: unknown ${d}`);
  for (const d of args.computeDtypes) if (!computeDtypes.includes(d)) throw new Error(`--compute-dtype: unknown ${d}; expected ${computeDtypes.join(',')}`);
  return args;
}

function formatRow(r: ThroughputRow): string {
  return (
    `${r.recipe.padEnd(6)} ${(r.kernels + (r.compute === 'bf16' ? '-bf16' : '')).padEnd(11)} ${r.backend.padEnd(18)} threads ${r.threads}  ` +
    `${r.secondsPerStep.toFixed(2).padStart(7)} s/step  ${r.tokensPerSecond.toFixed(0).padStart(7)} tokens/s  ` +
    `${r.gflops.toFixed(1).padStart(6)} GFLOP/s${r.note ? '  ' + r.note : ''}`
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const selection = await selectBackend(args.backend);
  const addon = loadNative();
  const threads = args.threads ?? addon.cpuInfo().threads;
  const peak = addon.peakGflops(threads);
  const say = (line: string) => (args.json ? process.stderr : process.stdout).write(line + '\n');
  say(`machine: ${addon.cpuInfo().simd}, ${threads} threads, measured FMA peak ${peak.toFixed(1)} GFLOP/s (addon peakGflops)`);
  const rows: ThroughputRow[] = [];
  for (const name of args.recipes) {
    const loaded = loadRecipe(recipePath(name));
    const recipe: Recipe = args.batch ? { ...loaded, train: { ...loaded.train, batch_size: args.batch } } : loaded;
    const params = parameterCounts(recipe.model).total;
    const tokensPerStep = recipe.train.batch_size * recipe.data.seq_len;
    const runs = args.kernels.flatMap((kernels): { kernels: 'tfjs' | 'native'; compute?: ComputeDtype }[] =>
      kernels === 'native' ? args.computeDtypes.map((compute) => ({ kernels, compute })) : [{ kernels }],
    );
    for (const { kernels, compute } of runs) {
      restoreTfjsKernels();
      if (kernels === 'native' && compute === 'bf16' && !addon.cpuInfo().bf16) {
        say(`${recipe.name.padEnd(6)} native-bf16 skipped: ${bf16Unsupported(addon)}`);
        continue;
      }
      if (kernels === 'native') registerNativeKernels(selection.tfjsName, { threads, addon, compute });
      const timer = args.profile ? new KernelTimer(selection.tfjsName) : null;
      timer?.install();
      const { secondsPerStep } = measureTraining(recipe, args.steps, timer);
      timer?.uninstall();
      const tokensPerSecond = tokensPerStep / secondsPerStep;
      const row: ThroughputRow = {
        recipe: recipe.name,
        kernels,
        ...(compute ? { compute } : {}),
        backend: `tfjs-${selection.tfjsName}`,
        threads: kernels === 'native' ? threads : 1,
        params,
        tokensPerStep,
        steps: args.steps,
        secondsPerStep,
        tokensPerSecond,
        gflops: (6 * params * tokensPerSecond) / 1e9,
        profile: timer?.report(),
        products: timer?.products(),
      };
      rows.push(row);
      say(formatRow(row));
      if (row.profile) {
        const total = row.profile.reduce((s, k) => s + k.ms, 0);
        for (const k of row.profile.slice(0, 15)) {
          say(`    ${k.kernel.padEnd(22)} ${(k.ms / args.steps).toFixed(0).padStart(7)} ms/step  ${((100 * k.ms) / total).toFixed(1).padStart(5)}%  ${k.calls / args.steps} calls/step`);
        }
        say('    products by shape (batch×[M×K]·[K×N], flags):');
        for (const p of (row.products ?? []).slice(0, 20)) {
          say(`      ${p.shape.padEnd(44)} ${(p.ms / args.steps).toFixed(1).padStart(7)} ms/step  ${p.calls / args.steps} calls/step  ${(p.flops / p.ms / 1e6).toFixed(1).padStart(6)} GFLOP/s`);
        }
      }
    }
    restoreTfjsKernels();
    if (args.peer) {
      // f32 through the system BLAS, and bf16 autocast (oneDNN): PyTorch at its best on this CPU.
      for (const dtype of args.peerDtypes) {
        const peer: PeerResult = runPytorchPeer(recipe, { steps: args.steps, threads, dtype });
        if (peer.skipped) {
          say(`${recipe.name.padEnd(6)} pytorch  skipped: ${peer.skipped}`);
          break;
        }
        const row: ThroughputRow = {
          recipe: recipe.name,
          kernels: 'pytorch',
          backend: `torch ${peer.torchVersion} ${dtype}`,
          threads,
          params,
          tokensPerStep,
          steps: args.steps,
          secondsPerStep: peer.secondsPerStep,
          tokensPerSecond: tokensPerStep / peer.secondsPerStep,
          gflops: (6 * params * tokensPerStep) / peer.secondsPerStep / 1e9,
          note: peer.blas,
        };
        rows.push(row);
        say(formatRow(row));
      }
    }
  }
  if (args.json) process.stdout.write(JSON.stringify({ peakGflops: peak, threads, rows }) + '\n');
}

if (require.main === module) {
  main().catch((error) => {
    process.stderr.write(`train_kernels: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  });
}
