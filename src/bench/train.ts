/**
 * Training benchmark: step time, tokens/s, achieved GFLOP/s (6 × parameters × tokens/s) and peak memory, for every
 * backend that loads, on the tiny and small recipes. The ceiling to compare with is the backend's plain 2-D matMul
 * rate (wasm on this machine, idle: ≈ 21–26 GFLOP/s, issue 3); an in-process microbenchmark of it gave implausibly
 * low figures under load, so it is printed as a reference rather than measured here.
 *
 *   node dist/bench/train.js [--recipes tiny,small] [--backends auto-list] [--steps N] [--small-batch B]
 *
 * Each (backend, recipe) runs in its own child process so that peak RSS is its own. Batches are random token ids
 * (speed does not depend on the text); the small recipe runs with a reduced batch (default 4 sequences) so a step
 * takes seconds rather than minutes on a CPU.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';
import { loadRecipe } from '../recipe';
import { packageRoot } from '../data';
import { MoEModel } from '../model/model';
import { initParams, paramSpecs } from '../model/params';
import { parameterCounts } from '../model/config';
import { AdamW } from '../train/adamw';
import { BackendName, selectBackend } from '../train/backend';
import { trainStep } from '../train/step';
import { routingOptions } from '../train/trainer';

interface Row {
  backend: string;
  recipe: string;
  params: number;
  batch: number;
  seqLen: number;
  steps: number;
  stepSeconds: number; // wall clock
  cpuStepSeconds: number; // CPU time of this process per step: on a shared machine, the idle-machine step time
  tokensPerSecond: number; // wall clock
  cpuTokensPerSecond: number; // per CPU second
  gflops: number; // 6 × params × tokens per CPU second
  peakRssMB: number;
  note?: string;
}

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1] : fallback;
}

/** CPU seconds of this process (user + system) since `since`. */
function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
}

/** Child process: time `steps` training steps of one recipe on one backend, print one JSON row. */
async function runOne(backend: BackendName, recipeName: string, steps: number, batchOverride: number | null): Promise<void> {
  const recipe = loadRecipe(path.join(packageRoot(), 'recipes', `${recipeName}.yaml`));
  await selectBackend(backend);
  const config = recipe.model;
  const batch = batchOverride ?? recipe.train.batch_size;
  const seqLen = recipe.data.seq_len;
  const params = initParams(config, recipe.seed);
  const model = new MoEModel(config, params);
  const decayed = new Set(paramSpecs(config).filter((s) => s.decay).map((s) => s.name));
  const optimizer = new AdamW(params, decayed, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  let seed = 12345;
  const randomBatch = () => {
    const ids = () => Int32Array.from({ length: batch * seqLen }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % config.vocab_size);
    return { inputs: ids(), targets: ids() };
  };
  const routing = routingOptions(recipe);
  const step = () => trainStep(model, params, optimizer, [randomBatch()], batch, seqLen, routing, 1e-4, 1.0);
  step(); // warm-up: kernel compilation, allocations
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < steps; i++) step();
  const stepSeconds = (performance.now() - start) / 1000 / steps;
  const cpuStepSeconds = cpuSeconds(cpuStart) / steps;
  const total = parameterCounts(config).total;
  const tokensPerSecond = (batch * seqLen) / stepSeconds;
  const row: Row = {
    backend,
    recipe: recipeName,
    params: total,
    batch,
    seqLen,
    steps,
    stepSeconds,
    cpuStepSeconds,
    tokensPerSecond,
    cpuTokensPerSecond: (batch * seqLen) / cpuStepSeconds,
    gflops: (6 * total * (batch * seqLen)) / cpuStepSeconds / 1e9,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(JSON.stringify(row) + '\n');
}

async function main(): Promise<void> {
  if (process.argv.includes('--one')) {
    const [backend, recipe, steps, batch] = process.argv.slice(process.argv.indexOf('--one') + 1);
    await runOne(backend as BackendName, recipe, Number(steps), batch === 'recipe' ? null : Number(batch));
    return;
  }
  const recipes = argument('recipes', 'tiny,small').split(',');
  const backends = argument('backends', 'node-gpu,node,wasm,cpu').split(',') as BackendName[];
  const steps = Number(argument('steps', '3'));
  const smallBatch = argument('small-batch', '4');
  const rows: Row[] = [];
  const skipped: string[] = [];
  for (const backend of backends) {
    try {
      await selectBackend(backend); // only to learn whether it loads, and why not
    } catch (error) {
      skipped.push(`${backend}: ${(error as Error).message}`);
      continue;
    }
    for (const recipe of recipes) {
      // The pure-JavaScript cpu backend is 25–50× slower than wasm: one step of `small` would take an hour.
      if (backend === 'cpu' && recipe !== 'tiny') {
        skipped.push(`cpu × ${recipe}: not run (one step would take tens of minutes)`);
        continue;
      }
      const batch = recipe === 'tiny' ? 'recipe' : smallBatch;
      const stepsHere = backend === 'cpu' || recipe !== 'tiny' ? 1 : steps;
      process.stderr.write(`bench: ${backend} × ${recipe} (${stepsHere} step${stepsHere > 1 ? 's' : ''} after a warm-up)\n`);
      const out = execFileSync(process.execPath, [__filename, '--one', backend, recipe, String(stepsHere), batch], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      rows.push(JSON.parse(out.trim().split('\n').pop() as string));
    }
  }
  const lines = [
    '| backend | recipe | params | tokens/step | step (s, wall) | tokens/s (wall) | CPU s/step | tokens per CPU s | GFLOP per CPU s (6·N·tok) | peak RSS (MB) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${r.recipe} | ${(r.params / 1e6).toFixed(2)} M | ${r.batch}×${r.seqLen} | ${r.stepSeconds.toFixed(3)} | ` +
        `${Math.round(r.tokensPerSecond)} | ${r.cpuStepSeconds.toFixed(3)} | ${Math.round(r.cpuTokensPerSecond)} | ${r.gflops.toFixed(2)} | ` +
        `${Math.round(r.peakRssMB)} |`,
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  process.stdout.write('\nCeiling: a plain 2-D matMul on wasm runs at ≈ 21–26 GFLOP/s on an idle core of this machine (issue 3).\n');
  const load = require('os').loadavg()[0] as number;
  process.stdout.write(
    `\nLoad average during the run: ${load.toFixed(1)} on ${require('os').cpus().length} cores. Wall-clock figures include ` +
      'waiting for the CPU on a shared machine; "CPU s/step" is the single-threaded work itself (≈ the idle-machine step time on wasm).\n',
  );
  if (skipped.length) process.stdout.write('\nNot measured: ' + skipped.join('; ') + '\n');
}

main().catch((error) => {
  process.stderr.write(`bench:train: ${(error as Error).message}\n`);
  process.exit(1);
});
