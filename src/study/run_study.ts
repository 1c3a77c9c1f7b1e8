/**
 * `dsmoe study`: expands a study file into points, runs the ones not finished (resuming an interrupted one where
 * it stopped), and rewrites study.json / study.md / the charts after each. Progress: one line per point with the
 * ETA of the whole study (remaining training FLOPs at the rate measured so far), and study_log.jsonl.
 *
 * DIR/study.json, study.md, *.svg   the outputs
 * DIR/study_log.jsonl               one JSON record per event (start, train, convert, point, interrupted, done)
 * DIR/corpus-<hash>.txt             the training text with the reasoning problems mixed in (when the study has probes)
 * DIR/points/<id>/                  one folder per point (see run_point.ts)
 *
 * With --jobs N > 1, points run in N child `dsmoe study --point ID` processes of this same build (one tfjs runtime
 * and one native thread pool per process, which cannot be shared inside one); otherwise they run in this process.
 */
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeFileAtomic } from '../checkpoint/atomic';
import { canonicalJson, loadRecipe } from '../recipe';
import { loadCorpusText } from '../data';
import { BackendChoice, describeBackend, selectBackend } from '../train/backend';
import { applyKernelChoice, describeKernels, type KernelChoice } from '../train/native_kernels';
import { formatDuration } from '../train/progress';
import { loadStudy, withOverrides, type StudySpec } from './study_file';
import { studyPoints, type StudyPoint } from './study_points';
import { mixProblems } from './probes';
import { resultFile, runPoint, type PointResult } from './run_point';
import { writeStudyOutputs, type StudyJson } from './study_outputs';

export interface StudyOptions {
  studyFile: string;
  outDir: string;
  resume: boolean;
  jobs: number;
  backend: BackendChoice;
  kernels: KernelChoice;
  threads?: number;
  verbose: boolean;
  /** run only this point (a --jobs child); outputs are left to the parent */
  onlyPoint?: string;
  /** end each point's training segment after this many steps, as Ctrl-C would (tests) */
  stopAfterSteps?: number;
  /** `--set field=value`: replaces a `set` entry of the study for this run */
  overrides?: string[];
  /** the command line, for study.md */
  command: string;
}

export interface StudyOutcome {
  study: StudyJson | null; // null for a --point child
  ran: string[]; // point ids run (or resumed) in this call
  skipped: string[]; // finished before this call
  interrupted: boolean;
}

/** The training text with the study's reasoning problems mixed in, written once per (corpus, probes). */
function mixedCorpus(spec: StudySpec, outDir: string): string | null {
  if (!spec.probes) return null;
  const base = loadRecipe(spec.recipeFile);
  const key = createHash('sha256').update(canonicalJson({ corpus: base.data.corpus, field: base.data.text_field, probes: spec.probes })).digest('hex').slice(0, 8);
  const file = path.join(outDir, `corpus-${key}.txt`);
  if (!fs.existsSync(file)) writeFileAtomic(file, mixProblems(loadCorpusText(base.data), spec.probes).text);
  return file;
}

function readResult(pointDir: string): PointResult | null {
  const file = resultFile(pointDir);
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PointResult;
  } catch {
    return null; // never written half (atomic), but a hand-edited file is rerun rather than trusted
  }
}

/** The CLI entry of this build, for --jobs children (absent when running from TypeScript sources). */
function cliEntry(): string | null {
  const entry = path.resolve(__dirname, '..', 'cli', 'main.js');
  return fs.existsSync(entry) ? entry : null;
}

export async function runStudy(options: StudyOptions): Promise<StudyOutcome> {
  const spec = withOverrides(loadStudy(options.studyFile), options.overrides ?? []);
  const outDir = path.resolve(options.outDir);
  const pointsDir = path.join(outDir, 'points');
  if (!Number.isInteger(options.jobs) || options.jobs < 1) throw new UserError(`--jobs must be a positive integer, got ${options.jobs}`);
  const existing = fs.existsSync(path.join(outDir, 'study.json')) || fs.existsSync(pointsDir);
  if (existing && !options.resume && !options.onlyPoint) {
    throw new UserError(`${outDir} already holds a study; pass --resume to continue it (finished points are skipped) or choose another --out`);
  }
  fs.mkdirSync(pointsDir, { recursive: true });
  const logFile = path.join(outDir, 'study_log.jsonl');
  const log = (event: Record<string, unknown>) => fs.appendFileSync(logFile, JSON.stringify({ time: new Date().toISOString(), ...event }) + '\n');
  const note = (line: string) => {
    if (options.verbose) process.stderr.write(`study: ${line}\n`);
  };

  const points = studyPoints(spec, { pointsDir, corpusFile: mixedCorpus(spec, outDir) });
  const selected = options.onlyPoint ? points.filter((p) => p.id === options.onlyPoint) : points;
  if (options.onlyPoint && selected.length === 0) throw new UserError(`--point ${options.onlyPoint}: no such point in ${spec.file}`);
  const results = new Map<string, PointResult>();
  for (const point of points) {
    const result = readResult(path.join(pointsDir, point.id));
    if (result) results.set(point.id, result);
  }
  const skipped = selected.filter((p) => results.has(p.id)).map((p) => p.id);
  const pending = selected.filter((p) => !results.has(p.id));
  if (!options.onlyPoint) {
    log({ event: 'start', study: spec.name, points: points.length, done: skipped.length, pending: pending.map((p) => p.id) });
    note(`${spec.name}: ${points.length} points, ${skipped.length} done, ${pending.length} to run → ${outDir}`);
  }

  const started = performance.now();
  const totalWork = pending.reduce((n, p) => n + p.cost.training_flops, 0);
  let doneWork = 0;
  const progress = (finished: StudyPoint) => {
    doneWork += finished.cost.training_flops;
    const elapsed = (performance.now() - started) / 1000;
    const eta = doneWork > 0 ? (elapsed * (totalWork - doneWork)) / doneWork : NaN;
    note(`${results.size}/${points.length} points done (${finished.id}: ${finished.label}); ${formatDuration(elapsed)} elapsed, ETA ${formatDuration(eta)}`);
  };
  const writeOutputs = () => (options.onlyPoint ? Promise.resolve(null) : writeStudyOutputs(outDir, spec, points, results, options.command));

  const ran: string[] = [];
  let interrupted = false;
  if (options.jobs > 1 && pending.length > 1 && !options.onlyPoint) {
    interrupted = await runInChildren(options, pending, pointsDir, results, ran, progress, writeOutputs);
  } else if (pending.length) {
    const backend = await selectBackend(options.backend);
    note(describeBackend(backend));
    const kernels = applyKernelChoice(options.kernels, backend.tfjsName, options.threads);
    note(describeKernels(kernels));
    for (const point of pending) {
      const outcome = await runPoint({
        spec,
        point,
        pointDir: path.join(pointsDir, point.id),
        backendName: backend.name,
        threads: options.threads,
        verbose: options.verbose,
        log: (event) => log(event),
        note,
        stopAfterSteps: options.stopAfterSteps,
      });
      ran.push(point.id);
      if (!outcome.result) {
        interrupted = true;
        note(`${point.id}: interrupted; continue with --resume`);
        break;
      }
      results.set(point.id, outcome.result);
      progress(point);
      await writeOutputs();
    }
  }
  const study = await writeOutputs();
  if (!options.onlyPoint) {
    log({ event: interrupted ? 'interrupted' : 'done', done: results.size, points: points.length });
    if (!interrupted) note(`done: ${path.join(outDir, 'study.md')}`);
  }
  return { study, ran, skipped, interrupted };
}

/** --jobs N: up to N child processes, one point each. */
async function runInChildren(
  options: StudyOptions,
  pending: StudyPoint[],
  pointsDir: string,
  results: Map<string, PointResult>,
  ran: string[],
  progress: (point: StudyPoint) => void,
  writeOutputs: () => Promise<unknown>,
): Promise<boolean> {
  const entry = cliEntry();
  if (!entry) throw new UserError('--jobs > 1 runs points in child processes of the built CLI (dist/); run `npm run build` first, or use --jobs 1');
  const queue = [...pending];
  let interrupted = false;
  const failures: string[] = [];
  const worker = async () => {
    for (let point = queue.shift(); point && !interrupted; point = queue.shift()) {
      const args = ['study', options.studyFile, '--out', options.outDir, '--point', point.id, '--backend', options.backend, '--kernels', options.kernels];
      for (const override of options.overrides ?? []) args.push('--set', override);
      if (options.threads !== undefined) args.push('--threads', String(options.threads));
      const code = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(entry)}).main(process.argv.slice(1))`, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
        child.on('exit', (status) => resolve(status ?? 1));
      });
      ran.push(point.id);
      const result = readResult(path.join(pointsDir, point.id));
      if (result) {
        results.set(point.id, result);
        progress(point);
        await writeOutputs();
      } else if (code === 130) {
        interrupted = true;
      } else {
        failures.push(`${point.id} (exit ${code})`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.jobs, pending.length) }, worker));
  if (failures.length) throw new UserError(`points failed: ${failures.join(', ')}; their errors are printed above; rerun with --resume`);
  return interrupted;
}
