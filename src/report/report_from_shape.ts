import * as path from 'path';
import type { PlanDtype } from '../plan/plan_format';
import { measureRandomWriteRate } from '../plan/random_plan';
import type { ReportRuntime } from './report_runtime';
import type { ReportJson } from './report_json';
import { FILES_RESERVE_MS, runReport, type ReportOptions } from './run_report';
import type { RunBudget } from './time_budget';
import { prepareRandomPlan, reusableRandomPlan } from './random_plan_report';
import type { SpeedSettings } from './report_from_folders';
import { measureMachine } from './machine';
import { resolveShape } from './paper_shapes';
import { ReportProgress } from './progress';
import { chooseLayers, priorRates, runMs, shapePlanView } from './time_budget';
import { dtypeBytes } from './plan_view';
import type { MatrixDtype } from '../plan/plan_format';
import { measureRequantizeRate } from '../plan/requantize_plan';
import { expertDtypeRowsMs } from './expert_dtype_rows';

export interface ShapeReportRequest extends Omit<SpeedSettings, 'batches' | 'repeats'> {
  shape: string;
  layers?: number;
  dtype: PlanDtype;
  k?: number;
  seed: number;
  planDir?: string;
  /** Given by the user; chosen within the budget otherwise (DEFAULT_BATCHES / DEFAULT_REPEATS without one). */
  batches?: number[];
  repeats?: number;
  /** Minutes for the whole report, plan writing included; 0 = no budget. */
  budgetMinutes: number;
  /** Date.now() when the command started (default: now). */
  startedAt?: number;
  /** Rows per expert dtype (`--expert-dtypes`): decode speed and bytes per token at each; none by default. */
  expertDtypes?: MatrixDtype[];
}

export const DEFAULT_BATCHES = [1, 4, 16, 64];
export const DEFAULT_REPEATS = 3;
/** Estimated time of the PyTorch peer (two rounds of a Python start, a torch import and one MoE layer's runs). */
const PEER_RESERVE_MS = 60_000;
/** The least timed work a chosen depth must leave room for: batch 1, two repeats (a median of paired ratios). */
const LEAST_WORK = { batches: [1], repeats: 2 };

/** Speed at a realistic shape without training: a random-init plan, timed dense vs sparse; no quality figures. */
export async function reportFromShape(runtime: ReportRuntime, request: ShapeReportRequest): Promise<ReportJson> {
  const startedAt = request.startedAt ?? Date.now();
  const planDir = request.planDir ?? path.join(request.outDir, 'random-plan');
  const promptLen = request.promptLen ?? 16;
  const decodeSteps = request.decodeSteps ?? 8;
  const planRequest = { shape: request.shape, layers: request.layers, dtype: request.dtype, k: request.k, seed: request.seed, planDir };
  const chooses = request.budgetMinutes > 0 && (request.layers === undefined || request.batches === undefined || request.repeats === undefined);

  let machine: ReportOptions['machine'];
  let budget: RunBudget | undefined;
  let layers = request.layers;
  if (chooses) {
    process.stderr.write(`report: measuring memory bandwidth and FMA peak (budget ${request.budgetMinutes} min)\n`);
    const measureStart = Date.now();
    const machineReport = measureMachine(runtime.probe, request.threads ?? runtime.probe.cpuInfo().threads);
    machine = { report: machineReport, measureMs: Date.now() - measureStart };
    const resolved = resolveShape(request.shape);
    const k = request.k ?? resolved.k;
    const fullLayers = resolved.config.num_hidden_layers;
    const rates = priorRates(machineReport.memory_bandwidth_gbs, machineReport.peak_gflops);
    const planAt = (L: number) => shapePlanView({ ...resolved.config, num_hidden_layers: L, num_experts_per_tok: k }, request.dtype, k);
    const calibration = { promptLen, decodeSteps: 2 };
    const calibrationMs = (L: number) => 2 * (runMs(planAt(L), rates, 'dense', 1, calibration) + runMs(planAt(L), rates, 'sparse', 1, calibration));
    const reserveMs = machine.measureMs + (request.peer ? PEER_RESERVE_MS : 0) + FILES_RESERVE_MS;
    let writeBytesPerMs: number | null = null;
    const writeMs = (L: number): number => {
      if (reusableRandomPlan({ ...planRequest, layers: L })) return 0;
      writeBytesPerMs ??= measureRandomWriteRate(planDir);
      return (planAt(L).cost.total_params * dtypeBytes(request.dtype)) / writeBytesPerMs;
    };
    const shape = { promptLen, decodeSteps };
    const expertDtypes = request.expertDtypes ?? [];
    const requantizeRate = expertDtypes.length ? measureRequantizeRate() : Infinity;
    const rowsMs = (L: number) => (expertDtypes.length ? expertDtypeRowsMs(planAt(L), expertDtypes, rates, shape, 0, requantizeRate) : 0);
    const least = { batches: request.batches ?? LEAST_WORK.batches, repeats: request.repeats ?? LEAST_WORK.repeats };
    let setupFits = true;
    let estimatedWriteMs = 0;
    if (layers === undefined) {
      const writes = new Map<number, number>();
      const cachedWriteMs = (L: number) => writes.get(L) ?? writes.set(L, writeMs(L)).get(L)!;
      const choice = chooseLayers({
        fullLayers,
        setupMs: (L) => cachedWriteMs(L) + calibrationMs(L) + rowsMs(L),
        planAt,
        rates,
        shape,
        availableMs: startedAt + request.budgetMinutes * 60_000 - Date.now() - reserveMs,
        leastWork: least,
      });
      layers = choice.layers;
      setupFits = choice.fits;
      estimatedWriteMs = cachedWriteMs(layers);
    } else {
      estimatedWriteMs = writeMs(layers);
    }
    budget = {
      minutes: request.budgetMinutes,
      startedAt,
      candidateBatches: DEFAULT_BATCHES,
      maxRepeats: DEFAULT_REPEATS,
      fixedBatches: request.batches,
      fixedRepeats: request.repeats,
      layers: { chosen: layers, full: fullLayers, given: request.layers !== undefined, estimated_write_ms: estimatedWriteMs },
      setupFits,
      peerReserveMs: PEER_RESERVE_MS,
    };
    process.stderr.write(
      `report: budget ${request.budgetMinutes} min: ${layers} of ${fullLayers} layers${request.layers !== undefined ? ' (given)' : ''}` +
        `${estimatedWriteMs > 0 ? `, about ${(estimatedWriteMs / 60_000).toFixed(1)} min to write the plan` : ''}; batches and repeats follow a calibration run\n`,
    );
  }

  process.stderr.write(`report: writing or reusing the random-init plan in ${planDir}\n`);
  let writing: ReportProgress | null = null;
  let writingDone = 0;
  const prepared = prepareRandomPlan({
    ...planRequest,
    layers,
    onProgress: (written, total) => {
      // The pace starts after the first chunk, which also counts the header and the file's creation.
      if (writing) writing.step(`${(written / 2 ** 30).toFixed(2)} of ${(total / 2 ** 30).toFixed(2)} GiB`, written - writingDone);
      else writing = new ReportProgress(total - written, request.progress, 'report: writing the random plan');
      writingDone = written;
    },
  });
  (writing as ReportProgress | null)?.stop();
  const plan = prepared.loaded.plan;
  return runReport(runtime, {
    kind: 'random-init',
    sparseDir: planDir,
    denseDir: null,
    shapeName: prepared.name,
    layersNote: prepared.layersNote,
    plan,
    outDir: request.outDir,
    threads: request.threads,
    throughput: { batches: request.batches ?? DEFAULT_BATCHES, promptLen, decodeSteps, repeats: request.repeats ?? DEFAULT_REPEATS, seed: 1 },
    quality: null,
    sweep: false,
    epsilons: [],
    referenceCheck: null,
    peer: { enabled: request.peer, batches: [1, 64], dtypes: ['f32', 'bf16'], repeats: request.peerRepeats, timeoutMs: 300_000 },
    llamaCpp: { enabled: request.llamaCpp ?? false, repeats: request.llamaCppRepeats ?? 3 },
    notes: [
      `Random-init plan (seed ${request.seed}, N(0, 0.02) weights, ${plan.dtype}, top-${prepared.k} of ${plan.config.num_experts} experts${prepared.reused ? ', reused from an earlier run' : ''}): speed only, no quality figures.`,
      'Random routers spread tokens almost evenly over experts, as a trained DS-MoE router with the MI loss does; the roofline assumes that balanced load.',
      ...(budget ? [budgetNote(budget)] : []),
    ],
    progress: request.progress,
    machine,
    budget,
    expertDtypes: { dtypes: request.expertDtypes ?? [], given: true },
  });
}

function budgetNote(budget: RunBudget): string {
  const layers = budget.layers;
  return (
    `Sized to --budget ${budget.minutes} min: ` +
    (layers ? `${layers.chosen} of ${layers.full} layers${layers.given ? ' (given)' : ' (chosen)'}, ` : '') +
    `batches and repeats chosen after a batch-1 calibration run (see budget in report.json).`
  );
}
