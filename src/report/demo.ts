import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { packageRoot } from '../data';
import { nativeReportRuntime } from './native_report_runtime';
import { reportFromFolders } from './report_from_folders';
import { DEFAULT_EPSILONS } from '../runtime/quality_cost_sweep';
import type { ReportJson } from './report_json';

/**
 * `dsmoe demo`: train the tiny recipe, convert it with threshold-topk, write the report, print one headline.
 * Train and convert run as child `dsmoe` processes of this same build (each stage keeps its own progress output
 * and frees its memory — tfjs for training — before the next starts); the report runs in this process.
 */

export interface DemoOptions {
  outDir: string;
  recipe: string;
  maxSteps?: number;
  batches: number[];
  repeats: number;
  threads?: number;
  reuse: boolean;
}

export interface DemoResult {
  report: ReportJson;
  seconds: { train: number; convert: number; report: number; total: number };
  headline: string;
}

/** Runs `dsmoe <args>` with the CLI entry of this build, inheriting stdio; throws naming the stage on failure. */
function runStage(stage: string, args: string[]): number {
  const entry = path.resolve(__dirname, '..', 'cli', 'main.js');
  const started = Date.now();
  const result = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(entry)}).main(process.argv.slice(1))`, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (result.error) throw new UserError(`demo: ${stage} could not start (${result.error.message})`);
  if (result.status !== 0) throw new UserError(`demo: ${stage} failed (exit ${result.status}); its error is printed above`);
  return (Date.now() - started) / 1000;
}

function complete(dir: string, files: string[]): boolean {
  return files.every((file) => fs.existsSync(path.join(dir, file)));
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const denseDir = path.join(options.outDir, 'dense');
  const sparseDir = path.join(options.outDir, 'sparse');
  const reportDir = path.join(options.outDir, 'report');
  const recipe = path.isAbsolute(options.recipe) || fs.existsSync(options.recipe) ? options.recipe : path.join(packageRoot(), options.recipe);

  let trainSeconds = 0;
  if (options.reuse && complete(denseDir, ['config.json', 'model.safetensors', 'tokenizer.json'])) {
    process.stderr.write(`demo: reusing the trained model in ${denseDir}\n`);
  } else {
    process.stderr.write(`demo: 1/3 training ${recipe} → ${denseDir}\n`);
    const steps = options.maxSteps !== undefined ? ['--max-steps', String(options.maxSteps)] : [];
    trainSeconds = runStage('train', ['train', recipe, '--out', denseDir, ...steps]);
  }

  let convertSeconds = 0;
  if (options.reuse && complete(sparseDir, ['plan.json', 'weights.safetensors'])) {
    process.stderr.write(`demo: reusing the sparse plan in ${sparseDir}\n`);
  } else {
    // The headline's bound is perplexity +0.5 %; 0.5 % of this model's ≈ 1.6-nat loss would be +0.8 % perplexity.
    process.stderr.write(`demo: 2/3 converting (the cheapest plan within ${DEMO_MAX_PERPLEXITY_INCREASE * 100} % of the dense calibration perplexity) → ${sparseDir}\n`);
    convertSeconds = runStage('convert', ['convert', denseDir, '--out', sparseDir, '--recipe', recipe, '--max-perplexity-increase', String(DEMO_MAX_PERPLEXITY_INCREASE)]);
  }

  process.stderr.write(`demo: 3/3 report → ${reportDir}\n`);
  const reportStarted = Date.now();
  const report = await reportFromFolders(nativeReportRuntime(options.threads), {
    outDir: reportDir,
    batches: options.batches,
    threads: options.threads,
    repeats: options.repeats,
    peer: true,
    peerRepeats: 5,
    denseDir,
    sparseDir,
    recipe,
    evalTokens: 8192,
    epsilons: DEFAULT_EPSILONS,
    sweep: true,
    referenceWindows: 2,
  });
  const reportSeconds = (Date.now() - reportStarted) / 1000;
  return {
    report,
    seconds: { train: trainSeconds, convert: convertSeconds, report: reportSeconds, total: (Date.now() - started) / 1000 },
    headline: demoHeadline(report),
  };
}

/** The demo's quality bound, as its headline states it: perplexity within 0.5 % of dense. */
export const DEMO_MAX_PERPLEXITY_INCREASE = 0.005;

/** The demo's one line: share of parameters active, decode speedup at batch 1, perplexity change. */
export function demoHeadline(report: ReportJson): string {
  const share = report.params.sparse.active_per_token / report.params.dense.active_per_token;
  const speedup = `${report.measured_speedup.toFixed(2)}× decode speedup at batch ${report.speedup_batch} (ideal ${report.ideal_speedup.toFixed(2)}×)`;
  const quality = report.quality;
  const perplexity = quality
    ? `perplexity ${quality.dense.perplexity.toFixed(3)} → ${quality.sparse.perplexity.toFixed(3)} (${formatChange(quality.sparse.perplexity / quality.dense.perplexity - 1)})`
    : 'no quality figures';
  return `DS-MoE demo: ${(share * 100).toFixed(1)}% of parameters active per token, ${speedup}, ${perplexity}`;
}

function formatChange(fraction: number): string {
  return `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(2)}%`;
}
