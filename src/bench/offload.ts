/**
 * Offloading benchmark (`npm run bench:offload`, i.e. `node dist/bench/offload.js`; issue 13): decode tokens/s at
 * batch 1 on a random-init bf16 plan (routed experts at `--expert-dtype`: bf16, or q8 / q4 blocks …) for
 *   resident        every weight in memory (the file read once before, so the mapping is warm);
 *   plain mmap      the default runtime from a cold page cache (the OS pages weights in as they are touched);
 *   cache+prefetch  --expert-cache at each size, speculative prefetch on;
 *   cache only      the same without prefetch;
 *   no cache        the smallest cache emptied after every token: every selected expert is read every token.
 * Cache runs read experts with O_DIRECT, so every miss costs a device read, as it would for a plan larger than
 * memory; every non-resident run starts with the plan's pages dropped (posix_fadvise DONTNEED). The disk's
 * sequential read speed is measured beside it (a cold buffered read of the whole plan file). Each configuration runs
 * in a child process of its own, so no mapping or cache survives between runs.
 *
 * Decoding feeds a fixed pseudo-random token sequence (teacher forcing) rather than the model's own greedy tokens:
 * a random-init model repeats one token, which would select the same experts every step and flatter every cache.
 *
 * Megrez2 (issue 14): `--share F` makes F consecutive layers use one pool of routed experts, `--pre-gate` routes
 * every layer after the first on the previous layer's post-attention-norm output, so the cache's prefetch for it is
 * exact; run the same shape with and without `--pre-gate` to compare the stall time.
 *
 *   node dist/bench/offload.js [--dir checkpoints/bench/offload] [--shape ds-moe-6b] [--layers 4] [--k 4]
 *                              [--sizes 12.5,25,50] [--tokens 32] [--threads N] [--quick] [--json FILE]
 *                              [--share F] [--pre-gate] [--expert-dtype bf16|q8|q4|…] [--write-only]
 * A quantized-expert plan gets its own folder by default (`offload-q4` …): cache slots, reads and bytes per token
 * then count the experts' blocks. `--write-only` writes (or finds) the plan and exits, so that writing it stays
 * outside a benchmark lock.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveShape } from '../report/paper_shapes';
import { withoutDefaults, type ModelConfig } from '../model/config';
import { renderSvg, CHART_CONFIG, SCHEMA } from '../report/charts/render_svg';
import { writeRandomPlan } from '../plan/random_plan';
import { readPlan } from '../plan/read_plan';
import { layerOps } from '../plan/plan_format';
import { WEIGHTS_FILE } from '../plan/build_plan';
import { classDtypes } from '../plan/plan_format';
import { CLASS_DTYPE_FLAGS, matrixDtypeOfFlag, type ClassDtypeFlag } from '../plan/dtype';
import { loadNative } from '../runtime/native';
import { openPlan } from '../runtime/open_plan';
import { expertBytesPerLayer, expertCacheRates, type ExpertCacheStats } from '../runtime/expert_cache';

interface RunSpec {
  dir: string;
  mode: 'resident' | 'mmap' | 'cache+prefetch' | 'cache only' | 'no cache';
  size?: string; // cache modes
  tokens: number;
  threads: number;
}

interface RunResult extends RunSpec {
  tokensPerSecond: number;
  seconds: number;
  cache: ExpertCacheStats | null;
}

const PROMPT = 8; // tokens prefilled before decode is timed

function tokenStream(n: number, vocab: number): Int32Array {
  let s = 2463534242;
  return Int32Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % vocab;
  });
}

/** One configuration, in this (child) process: prints one JSON line. */
async function runOne(spec: RunSpec): Promise<void> {
  const addon = loadNative();
  const weights = path.join(spec.dir, WEIGHTS_FILE);
  if (spec.mode === 'resident') {
    const fd = fs.openSync(weights, 'r'); // warm the page cache: the mapping then finds every page in memory
    const buf = Buffer.alloc(64 << 20);
    for (let at = 0; fs.readSync(fd, buf, 0, buf.length, at) > 0; at += buf.length);
    fs.closeSync(fd);
  } else {
    addon.dropPageCache(weights);
  }
  const cache =
    spec.mode === 'resident' || spec.mode === 'mmap'
      ? undefined
      : { size: spec.size ?? '25%', prefetch: spec.mode === 'cache+prefetch', reloadEveryStep: spec.mode === 'no cache', directIo: true };
  const { loaded, model, context } = openPlan(spec.dir, { threads: spec.threads, slots: 1, maxContext: PROMPT + spec.tokens + 1, expertCache: cache });
  const ids = tokenStream(PROMPT + spec.tokens, loaded.plan.config.vocab_size);
  const one = (n: number) => new Int32Array(n);
  await context.evaluate(ids.subarray(0, PROMPT), one(PROMPT), Int32Array.from({ length: PROMPT }, (_, i) => i), Int32Array.of(PROMPT - 1));
  const start = process.hrtime.bigint();
  for (let t = PROMPT; t < PROMPT + spec.tokens; t++) {
    await context.evaluate(ids.subarray(t, t + 1), one(1), Int32Array.of(t), Int32Array.of(0));
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const raw = model.expertCacheStats();
  model.dispose();
  const result: RunResult = { ...spec, seconds, tokensPerSecond: spec.tokens / seconds, cache: raw ? expertCacheRates(raw) : null };
  process.stdout.write(JSON.stringify(result) + '\n');
}

/** Cold buffered sequential read of the whole file, in GB/s. */
function diskReadGBs(file: string): number {
  loadNative().dropPageCache(file);
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(16 << 20);
  const start = process.hrtime.bigint();
  let total = 0;
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, total)) > 0; ) total += n;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  fs.closeSync(fd);
  loadNative().dropPageCache(file);
  return total / seconds / 1e9;
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv: string[]): Promise<void> {
  const child = flag(argv, '--run');
  if (child) return runOne(JSON.parse(child) as RunSpec);

  const quick = argv.includes('--quick');
  const share = Number(flag(argv, '--share') ?? 1);
  if (!Number.isInteger(share) || share < 1) throw new Error(`--share must be a positive integer, got ${flag(argv, '--share')}`);
  const preGate = argv.includes('--pre-gate');
  const dtypeFlag = flag(argv, '--expert-dtype') ?? 'bf16';
  if (!(CLASS_DTYPE_FLAGS as readonly string[]).includes(dtypeFlag)) throw new Error(`--expert-dtype must be one of ${CLASS_DTYPE_FLAGS.join(', ')}, got ${dtypeFlag}`);
  const expertDtype = matrixDtypeOfFlag(dtypeFlag as ClassDtypeFlag);
  // one plan folder per architecture and expert dtype
  const variant = `${share > 1 ? `-f${share}` : ''}${preGate ? '-pregate' : ''}${expertDtype === 'bf16' ? '' : `-${dtypeFlag}`}`;
  const dir = path.resolve(flag(argv, '--dir') ?? path.join('checkpoints', 'bench', `${quick ? 'offload-quick' : 'offload'}${variant}`));
  const shapeName = flag(argv, '--shape') ?? 'ds-moe-6b';
  const layers = Number(flag(argv, '--layers') ?? (quick ? 2 : 4));
  const k = Number(flag(argv, '--k') ?? 4);
  const tokens = Number(flag(argv, '--tokens') ?? (quick ? 8 : 32));
  const threads = Number(flag(argv, '--threads') ?? os.cpus().length);
  const sizes = (flag(argv, '--sizes') ?? '12.5,25,50').split(',').map((s) => `${s}%`);
  const shape = resolveShape(shapeName, layers);
  const config: ModelConfig = {
    ...(quick ? { ...shape.config, hidden_size: 512, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 2048 } : shape.config),
    ...(share > 1 ? { experts_shared_frequency: share } : {}),
    ...(preGate ? { pre_gate: true } : {}),
  };

  if (!fs.existsSync(path.join(dir, 'plan.json'))) {
    process.stderr.write(`writing a random-init bf16 plan of ${shape.name} (${layers} layers, top-${k}, experts ${expertDtype}${share > 1 ? `, experts_shared_frequency ${share}` : ''}${preGate ? ', pre_gate' : ''}) to ${dir} …\n`);
    writeRandomPlan(dir, config, { dtype: 'bf16', dtypes: { experts: expertDtype, attention: 'bf16' }, seed: 1, k });
  }
  if (argv.includes('--write-only')) return; // the plan written (or found); time it later, e.g. under a lock
  const { plan } = readPlan(dir);
  // A plan left from a run with other flags would silently measure another model: its config must be this one.
  const describe = (c: ModelConfig) => JSON.stringify(withoutDefaults(c), Object.keys(withoutDefaults(c)).sort());
  const [want, found] = [describe(config), describe(plan.config)];
  if (found !== want) throw new Error(`${dir} holds a plan of another shape (${found}, wanted ${want}); pass --dir for a new folder`);
  if (classDtypes(plan).experts !== expertDtype) {
    throw new Error(`${dir} holds a plan with experts at ${classDtypes(plan).experts}, not ${expertDtype}: remove it or pass another --dir`);
  }
  const weights = path.join(dir, WEIGHTS_FILE);
  const fileBytes = fs.statSync(weights).size;
  // A shared pool is stored once: count the experts of each pool's first layer only.
  const ownsExperts = (l: number) => (layerOps(plan.layers[l]).experts.pool ?? l) === l;
  const expertBytes = expertBytesPerLayer(plan).reduce((a, b, l) => a + (ownsExperts(l) ? b : 0), 0) * config.num_experts;
  const disk = diskReadGBs(weights);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  process.stderr.write(
    `plan ${(fileBytes / 2 ** 30).toFixed(2)} GiB (experts ${(expertBytes / 2 ** 30).toFixed(2)} GiB), ${threads} threads, ${cpu}; ` +
      `disk sequential read ${disk.toFixed(2)} GB/s (cold, buffered)\n`,
  );

  const runs: RunSpec[] = [
    { dir, mode: 'resident', tokens, threads },
    { dir, mode: 'mmap', tokens, threads },
    ...sizes.flatMap((size) => [
      { dir, mode: 'cache+prefetch' as const, size, tokens, threads },
      { dir, mode: 'cache only' as const, size, tokens, threads },
    ]),
    { dir, mode: 'no cache', size: `${(100 * k) / config.num_experts}%`, tokens, threads },
  ];
  const log = path.join(dir, 'offload_log.jsonl');
  const results: RunResult[] = [];
  const began = Date.now();
  for (const [i, run] of runs.entries()) {
    const child = spawnSync(process.execPath, [__filename, '--run', JSON.stringify(run)], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (child.status !== 0) throw new Error(`run ${run.mode} ${run.size ?? ''} failed: ${child.stderr}`);
    const result = JSON.parse(child.stdout.trim().split('\n').pop() as string) as RunResult;
    results.push(result);
    fs.appendFileSync(log, JSON.stringify({ time: new Date().toISOString(), disk_gbs: disk, ...result }) + '\n');
    const elapsed = (Date.now() - began) / 1000;
    const eta = (elapsed / (i + 1)) * (runs.length - i - 1);
    process.stderr.write(
      `[${i + 1}/${runs.length}] ${run.mode}${run.size ? ' ' + run.size : ''}: ${result.tokensPerSecond.toFixed(2)} tok/s` +
        `${result.cache ? `, hit rate ${pct(result.cache.hitRate)}, recall ${pct(result.cache.prefetchRecall)}` : ''} (ETA ${eta.toFixed(0)} s)\n`,
    );
  }

  const mmap = results.find((r) => r.mode === 'mmap')?.tokensPerSecond ?? NaN;
  const lines = [
    `| mode | cache | tokens/s | × plain mmap | hit rate | prefetch recall / precision | MiB read per token | stalled s per token |`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...results.map((r) => {
      const c = r.cache;
      return (
        `| ${r.mode} | ${r.size ?? (r.mode === 'resident' ? 'all' : '—')} | ${r.tokensPerSecond.toFixed(2)} | ${(r.tokensPerSecond / mmap).toFixed(2)} | ` +
        `${c ? pct(c.hitRate) : '—'} | ${c && c.prefetchRecall !== null ? `${pct(c.prefetchRecall)} / ${pct(c.prefetchPrecision)}` : '—'} | ` +
        `${c ? (c.bytesRead / 2 ** 20 / (r.tokens + PROMPT)).toFixed(1) : '—'} | ${c ? (c.stallSeconds / r.tokens).toFixed(3) : '—'} |`
      );
    }),
  ];
  const header =
    `${shape.name} shape, ${layers} layers, ${config.num_experts} experts × ${config.moe_intermediate_size}, top-${k}, bf16 with experts ${expertDtype}, ` +
    `experts_shared_frequency ${share}, pre_gate ${preGate}, ` +
    `plan ${(fileBytes / 2 ** 30).toFixed(2)} GiB; batch 1, ${tokens} decode tokens after an ${PROMPT}-token prefill; ` +
    `${threads} threads, ${cpu}; disk sequential read ${disk.toFixed(2)} GB/s`;
  process.stdout.write(`${header}\n\n${lines.join('\n')}\n`);
  const svg = await renderSvg({
    $schema: SCHEMA,
    title: `Decode tokens/s vs expert cache size (${shape.name}, ${layers} layers, experts ${expertDtype}, cold start)`,
    config: CHART_CONFIG,
    layer: [
      {
        data: { values: results.filter((r) => r.mode.startsWith('cache')).map((r) => ({ mode: r.mode, share: parseFloat(r.size as string), tokens_per_s: r.tokensPerSecond })) },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'share', type: 'quantitative', title: 'Expert cache (% of each layer\'s experts)' },
          y: { field: 'tokens_per_s', type: 'quantitative', title: 'Decode tokens per second' },
          color: { field: 'mode', type: 'nominal', title: 'Mode' },
        },
      },
      {
        data: { values: results.filter((r) => !r.mode.startsWith('cache')).map((r) => ({ mode: r.mode, tokens_per_s: r.tokensPerSecond })) },
        mark: { type: 'rule', strokeDash: [4, 3] },
        encoding: { y: { field: 'tokens_per_s', type: 'quantitative' }, color: { field: 'mode', type: 'nominal' } },
      },
    ],
    width: 420,
    height: 260,
  } as never);
  fs.writeFileSync(path.join(dir, 'offload.svg'), svg);
  const json = flag(argv, '--json');
  if (json) fs.writeFileSync(json, JSON.stringify({ header, disk_gbs: disk, results }, null, 2));
  process.stderr.write(`plot: ${path.join(dir, 'offload.svg')}; log: ${log}\n`);
}

function pct(v: number | null): string {
  return v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`;
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`bench:offload: ${(error as Error).message}\n`);
  process.exit(1);
});
