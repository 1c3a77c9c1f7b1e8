/**
 * The GPU run's end-to-end part (scripts/gpu-check.sh, docs/cuda.md): the CUDA model of the addon against the CPU
 * runtime, and its batch-1 decode speed. Needs only Node and the built addon (no npm packages at run time), so the
 * GPU machine runs it from `dist/` with a carried Node binary.
 *
 *   node dist/bench/cuda_check.js [--dir DIR] [--require-cuda] [--quick] [--layers-1b N] [--layers-6b N]
 *
 * 1. Loss of a random-init plan of the tiny recipe's shape (the demo model) on the same tokens, `device: 'cuda'`
 *    vs `device: 'cpu'`, for f32 and bf16 weights, top-k and threshold plans, plan and dense routing. The target
 *    (issue 20): relative difference < 1e-3 for f32; the bf16 figure is stated. Any f32 case over it fails the run.
 *    With the device expert cache (`expertCache` 25 % and 50 %, issue 13, top-k plans) the CUDA logits must equal
 *    the resident CUDA run's: bit for bit on 8 tokens (mat-vec experts), within 1e-6 relative on the 64-token
 *    window (grouped GEMMs, whose float atomics may add in another order).
 * 2. Batch-1 decode on CUDA at the DS-MoE-1B and -6B shapes (random-init bf16, the paper's active share as top-k,
 *    sparse and dense routing, fewer layers than the paper to fit the run): tokens/s and the weight bytes read per
 *    second (the plan's cost model: active or dense weight bytes per token × tokens/s).
 *
 * Prints one JSON object per figure on stdout, progress on stderr. Without a visible GPU the CPU side still runs
 * and the CUDA parts print `skipped: ...` (a dry run); --require-cuda makes that an error.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ModelConfig } from '../model/config';
import { writeRandomPlan, type RandomPlanOptions } from '../plan/random_plan';
import { resolveShape } from '../report/paper_shapes';
import { loadNative, type NativeContext, type RoutingOverride } from '../runtime/native';
import { nativeSpec } from '../runtime/spec';
import { SparseModel } from '../runtime/model';
import { TINY_SERVE_CONFIG } from '../serve/load_serve_model';

interface Args {
  dir: string;
  requireCuda: boolean;
  quick: boolean;
  layers1b: number;
  layers6b: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { dir: path.join('checkpoints', 'bench', 'cuda-check'), requireCuda: false, quick: false, layers1b: 8, layers6b: 4 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const count = () => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
      return n;
    };
    if (flag === '--dir') args.dir = value();
    else if (flag === '--require-cuda') args.requireCuda = true;
    else if (flag === '--quick') args.quick = true;
    else if (flag === '--layers-1b') args.layers1b = count();
    else if (flag === '--layers-6b') args.layers6b = count();
    else throw new Error(`unknown flag ${flag} (see the comment at the top of src/bench/cuda_check.ts)`);
  }
  return args;
}

/** recipes/tiny.yaml's model with the byte tokenizer (the demo's plan shape). */
const TINY: ModelConfig = { ...TINY_SERVE_CONFIG, max_position_embeddings: 64 };
const F32_TARGET = 1e-3;

const say = (line: string) => process.stderr.write(`cuda-check: ${line}\n`);
const emit = (row: object) => process.stdout.write(JSON.stringify(row) + '\n');
const now = () => Number(process.hrtime.bigint()) / 1e9;

function randomTokens(n: number, V: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % V);
}

/** max |a − b| / max |b| over every element. */
function maxRelative(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** CPU and CUDA loss of the same tokens (windows of the plan's context); returns the f32 failures. */
async function lossCheck(dir: string, cuda: boolean): Promise<string[]> {
  const failures: string[] = [];
  const ids = randomTokens(1024, TINY.vocab_size, 11);
  const cases: [string, RandomPlanOptions][] = [
    ['f32-topk', { dtype: 'f32', seed: 1, k: 2 }],
    ['f32-threshold', { dtype: 'f32', seed: 1, k: 2, strategy: 'threshold' }],
    ['bf16-topk', { dtype: 'bf16', seed: 1, k: 2 }],
    ['bf16-threshold', { dtype: 'bf16', seed: 1, k: 2, strategy: 'threshold' }],
  ];
  for (const [name, options] of cases) {
    const planDir = path.join(dir, `tiny-${name}`);
    writeRandomPlan(planDir, TINY, options);
    const cpu = SparseModel.load(planDir, { device: 'cpu' });
    const gpu = cuda ? SparseModel.load(planDir, { device: 'cuda' }) : null;
    try {
      for (const mode of ['plan', 'dense'] as const) {
        cpu.setMode(mode);
        const want = await cpu.score(ids);
        const row: Record<string, unknown> = { bench: 'e2e_loss', plan: name, dtype: options.dtype, mode, tokens: want.tokens, cpu_loss: want.loss };
        if (gpu) {
          gpu.setMode(mode);
          const got = await gpu.score(ids);
          const rel = Math.abs(got.loss - want.loss) / want.loss;
          // random-init losses sit near ln V whatever the model does: the logits of one window say more
          const window = ids.slice(0, TINY.max_position_embeddings);
          const logitsRel = maxRelative(await gpu.logits(window), await cpu.logits(window));
          Object.assign(row, {
            cuda_loss: got.loss,
            relative: rel,
            logits_relative: logitsRel,
            device: gpu.device,
            target: options.dtype === 'f32' ? F32_TARGET : null,
          });
          if (options.dtype === 'f32' && !(rel < F32_TARGET)) failures.push(`${name} ${mode}: relative loss difference ${rel.toExponential(2)} ≥ ${F32_TARGET}`);
          say(`${name} ${mode}: loss cuda ${got.loss.toFixed(6)} vs cpu ${want.loss.toFixed(6)}, relative ${rel.toExponential(2)}; logits ${logitsRel.toExponential(2)}`);
          // top-k plans: a threshold plan's tokens may select more experts than a 25 % cache of 8 holds
          if (mode === 'plan' && options.strategy !== 'threshold') failures.push(...(await expertCacheCheck(planDir, name, gpu, window)));
        }
        emit(row);
      }
    } finally {
      await cpu.dispose();
      await gpu?.dispose();
    }
  }
  return failures;
}

/**
 * The CUDA model with the device expert cache against the resident CUDA model on the same tokens: 8 tokens (the
 * mat-vec path: must be bit-identical) and the whole window (grouped GEMMs, whose float atomics may reorder sums).
 */
async function expertCacheCheck(planDir: string, name: string, gpu: SparseModel, window: number[]): Promise<string[]> {
  const failures: string[] = [];
  const short = window.slice(0, 8);
  const residentShort = await gpu.logits(short);
  const residentWindow = await gpu.logits(window);
  for (const size of ['25%', '50%']) {
    const cached = SparseModel.load(planDir, { device: 'cuda', expertCache: { size } });
    try {
      const shortRel = maxRelative(await cached.logits(short), residentShort);
      const windowRel = maxRelative(await cached.logits(window), residentWindow);
      const stats = cached.expertCacheStats();
      emit({ bench: 'e2e_expert_cache', plan: name, size, short_relative: shortRel, window_relative: windowRel, hit_rate: stats?.hitRate, prefetch_recall: stats?.prefetchRecall, bytes_copied: stats?.bytesRead });
      say(`${name} expert cache ${size}: logits vs resident CUDA ${shortRel.toExponential(2)} (8 tokens), ${windowRel.toExponential(2)} (window); hit rate ${stats?.hitRate?.toFixed(3)}, recall ${stats?.prefetchRecall?.toFixed(3)}`);
      if (shortRel !== 0) failures.push(`${name} expert cache ${size}: 8-token logits differ from the resident CUDA run (${shortRel.toExponential(2)} relative)`);
      if (!(windowRel <= 1e-6)) failures.push(`${name} expert cache ${size}: window logits differ from the resident CUDA run by ${windowRel.toExponential(2)} (relative)`);
      if (!stats || stats.hits + stats.misses === 0) failures.push(`${name} expert cache ${size}: no cache traffic counted`);
    } finally {
      await cached.dispose();
    }
  }
  return failures;
}

async function decodeStep(ctx: NativeContext, V: number, steps: number, routing?: RoutingOverride): Promise<number> {
  const prompt = 32;
  ctx.clearSlot(0);
  const ids = randomTokens(prompt + steps + 1, V, 5);
  await ctx.evaluate(Int32Array.from(ids.slice(0, prompt)), new Int32Array(prompt), Int32Array.from({ length: prompt }, (_, i) => i), new Int32Array([prompt - 1]), routing);
  const times: number[] = [];
  for (let step = 0; step <= steps; step++) {
    const t0 = now();
    await ctx.evaluate(new Int32Array([ids[prompt + step]]), new Int32Array(1), new Int32Array([prompt + step]), new Int32Array(1), routing);
    if (step > 0) times.push(now() - t0); // step 0 warms up
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function decodeBench(dir: string, shape: string, layers: number): Promise<void> {
  const { name, config, k } = resolveShape(shape, layers);
  const planDir = path.join(dir, `${name}-${layers}l`);
  const t0 = now();
  const loaded = writeRandomPlan(planDir, config, { dtype: 'bf16', seed: 1, k });
  say(`${name} (${layers} layers, top-${k}): random plan written in ${(now() - t0).toFixed(1)} s`);
  const addon = loadNative();
  const model = new addon.NativeModel({ ...nativeSpec(loaded, 0), device: 'cuda' });
  try {
    const ctx = model.newContext(1, 128);
    const cost = loaded.plan.cost;
    const seconds: Record<string, number> = {};
    for (const mode of ['sparse', 'dense'] as const) {
      const routing: RoutingOverride | undefined = mode === 'dense' ? { mode: 'dense' } : undefined;
      const step = await decodeStep(ctx, config.vocab_size, 40, routing);
      const bytes = mode === 'dense' ? cost.dense_weight_bytes_per_token : cost.active_weight_bytes_per_token;
      seconds[mode] = step;
      emit({ bench: 'addon_decode_b1', shape: name, layers, k, mode, card: model.info().deviceName, ms_per_token: step * 1e3, tok_s: 1 / step, weight_gb_per_token: bytes / 1e9, weight_gbs: bytes / step / 1e9 });
      say(`${name} ${mode}: ${(1 / step).toFixed(1)} tok/s, ${(bytes / step / 1e9).toFixed(0)} GB/s of weights`);
    }
    const ideal = cost.dense_weight_bytes_per_token / cost.active_weight_bytes_per_token;
    emit({ bench: 'addon_decode_b1_speedup', shape: name, layers, k, speedup: seconds.dense / seconds.sparse, ideal, fraction_of_ideal: seconds.dense / seconds.sparse / ideal });
  } finally {
    model.dispose();
    fs.rmSync(planDir, { recursive: true, force: true }); // gigabytes: not left behind
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const info = loadNative().cpuInfo();
  say(`addon: CUDA ${info.cudaBuilt ? 'linked' : 'not linked'}, ${info.cudaDevices} device(s)${info.cudaDevice ? ` (${info.cudaDevice})` : ''}`);
  if (!info.cuda) {
    if (args.requireCuda) throw new Error('--require-cuda: no usable CUDA device (cpuInfo().cuda is false)');
    say('skipped: every CUDA part (no CUDA device visible); the CPU side runs as a dry run');
  }
  fs.mkdirSync(args.dir, { recursive: true });
  const failures = await lossCheck(args.dir, info.cuda);
  if (info.cuda && !args.quick) {
    await decodeBench(args.dir, 'ds-moe-1b', args.layers1b);
    await decodeBench(args.dir, 'ds-moe-6b', args.layers6b);
  } else {
    say('skipped: decode at the DS-MoE-1B / 6B shapes (needs a GPU, not --quick)');
  }
  if (failures.length) throw new Error(`f32 loss target missed:\n  ${failures.join('\n  ')}`);
}

main().catch((error) => {
  process.stderr.write(`cuda-check: ${(error as Error).message}\n`);
  process.exit(1);
});
