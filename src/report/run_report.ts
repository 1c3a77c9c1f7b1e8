import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic, writeJsonAtomic } from '../checkpoint/atomic';
import type { ReportRuntime } from './report_runtime';
import { attentionExpertsPerToken } from '../plan/cost';
import type { PlanView } from './plan_view';
import { keptExperts, planTopK } from './plan_view';
import type { ReportJson } from './report_json';
import type { Quality, QualityInput } from '../runtime/quality';
import { measureQuality } from '../runtime/quality';
import type { QualityCostPoint } from '../runtime/quality_cost_sweep';
import { sweepQualityCost, sweepRoutings } from '../runtime/quality_cost_sweep';
import { measureThroughput, throughputUnits, ThroughputSettings } from './throughput';
import { measureMachine, remeasureBandwidth, type MachineReport } from './machine';
import { runMs, sizeToBudget, type CostRates, type RunBudget } from './time_budget';
import type { BudgetReport } from './report_json';
import { analyse } from './analysis';
import { uniformSelection } from './cost_model';
import { expertLoadFromCalibration, expertLoadFromCounts } from './expert_load';
import type { ExpertLoadCell } from './charts/expert_load_chart';
import { bestOfRounds, OurLayerTiming, PeerReport, PeerResult, runPeer, withOurTimings } from './peer_pytorch';
import { measureLlamaCpp, type LlamaCppColumn } from './llama_cpp_column';
import { ReportProgress } from './progress';
import { writeFigures } from './write_figures';
import { automaticNotes } from './automatic_notes';
import { reportMarkdown } from './report_markdown';
import type { MatrixDtype } from '../plan/plan_format';
import { measureRequantizeRate } from '../plan/requantize_plan';
import { expertDtypeRowsMs, measureExpertDtypeRows, reencodedPlans, resolveExpertDtypes, type ExpertDtypeRow, type PlanAtDtype } from './expert_dtype_rows';

/**
 * `dsmoe report`: the measurement sequence and the files it writes. Order matters for honesty: the machine's
 * limits are measured in the same process before (and bandwidth again after) the timed runs; quality runs before
 * timing so that the page cache holds the weights for both modes alike.
 */

/** Alternating PyTorch / dsmoe rounds of the peer comparison. */
const PEER_ROUNDS = 2;
/** Time set aside for rendering figures and writing the files, when sizing work to a budget. */
export const FILES_RESERVE_MS = 10_000;

export interface ReferenceCheckInput {
  /** Loss of the dense checkpoint (reference forward) on each of these windows, computed by the caller. */
  windows: Int32Array[];
  referenceLoss: () => { loss: number; tokens: number };
}

export interface ReportOptions {
  kind: 'trained' | 'random-init';
  sparseDir: string;
  denseDir: string | null;
  shapeName: string | null;
  layersNote: string | null;
  plan: PlanView;
  outDir: string;
  threads?: number;
  throughput: Omit<ThroughputSettings, 'vocabSize'>;
  quality: QualityInput | null;
  /** Run the quality–cost sweep (top-k for k = 1 … E, then each ε of `epsilons`). */
  sweep: boolean;
  epsilons: number[];
  referenceCheck: ReferenceCheckInput | null;
  peer: { enabled: boolean; batches: number[]; dtypes: ('f32' | 'bf16')[]; repeats: number; timeoutMs: number };
  /** The same plan exported to GGUF and timed in llama.cpp (node-llama-cpp, when installed). */
  llamaCpp?: { enabled: boolean; repeats: number };
  notes: string[];
  progress?: boolean;
  /** The machine measured before the plan was opened (a budget needs it early), and how long that took. */
  machine?: { report: MachineReport; measureMs: number };
  budget?: RunBudget;
  /**
   * Rows per expert bit-width (expert_dtype_rows.ts): the dtypes, whether the user named them (a dtype the shape
   * cannot store is then an error, else a note), and how a copy at a dtype is made (default: re-encoded from the
   * plan's weights under outDir).
   */
  expertDtypes?: { dtypes: MatrixDtype[]; given: boolean; planAt?: (dtype: MatrixDtype) => PlanAtDtype };
}

export async function runReport(runtime: ReportRuntime, options: ReportOptions): Promise<ReportJson> {
  const { plan } = options;
  const settings: ThroughputSettings = { ...options.throughput, vocabSize: plan.config.vocab_size };
  const budget = options.budget;
  const maxBatch = Math.max(...settings.batches, ...(budget ? budget.fixedBatches ?? budget.candidateBatches : []));
  const windowLength = options.quality ? Math.max(...options.quality.windows.map((w) => w.length)) : 0;
  const qualitySlots = options.quality ? options.quality.slots : 0;
  const routings = sweepRoutings(Math.max(...keptExperts(plan).map((kept) => kept.length)), options.epsilons);
  const sweepCount = options.quality && options.sweep ? routings.length : 0;
  const notes = [...options.notes];
  const resolved = options.expertDtypes ? resolveExpertDtypes(plan, options.expertDtypes.dtypes, options.expertDtypes.given) : { dtypes: [], notes: [] };
  const expertDtypes = resolved.dtypes;
  notes.push(...resolved.notes);
  const progress = new ReportProgress(
    // machine, bandwidth again, PyTorch peer, llama.cpp peer, files: 5 steps besides quality, timing and dtype rows
    (options.quality ? 2 + sweepCount : 0) + (options.referenceCheck ? 1 : 0) + throughputUnits(settings) + expertDtypes.length + 5,
    options.progress,
  );
  try {
    progress.note('loading the plan');
    const opened = await runtime.openPlan(options.sparseDir, {
      threads: options.threads,
      slots: Math.max(maxBatch, qualitySlots),
      maxContext: Math.max(settings.promptLen + settings.decodeSteps, windowLength),
    });
    try {
      const { context } = opened;
      if (opened.probe) settings.probe = opened.probe;
      let machine: MachineReport;
      let machineMs: number;
      if (options.machine) {
        machine = { ...options.machine.report, threads: opened.threads };
        machineMs = options.machine.measureMs;
      } else {
        progress.note('measuring memory bandwidth and FMA peak');
        const start = Date.now();
        machine = measureMachine(runtime.probe, opened.threads);
        machineMs = Date.now() - start;
      }
      progress.step('machine measured');

      let budgetReport: BudgetReport | null = null;
      let rates: CostRates | null = null;
      const qualityTokens = options.quality ? options.quality.windows.reduce((n, w) => n + w.length - 1, 0) : 0;
      const requantizeRate = budget && expertDtypes.length > 1 ? measureRequantizeRate() : Infinity;
      const rowsMs = (at: CostRates, dtypes: readonly MatrixDtype[]) => expertDtypeRowsMs(plan, dtypes, at, settings, qualityTokens, requantizeRate);
      const laterReserveMs = (budget && options.peer.enabled ? budget.peerReserveMs : 0) + FILES_RESERVE_MS;
      if (budget) {
        progress.note('calibration: batch 1, dense and sparse');
        const reserve = (at: CostRates) => machineMs + laterReserveMs + rowsMs(at, expertDtypes);
        const sized = await sizeToBudget(context, plan, settings, budget, reserve);
        rates = sized.rates;
        budgetReport = sized.report;
        settings.batches = sized.report.batches.chosen;
        settings.repeats = sized.report.repeats.chosen;
        process.stderr.write(`report: ${sized.summary}\n`);
        progress.weighInMs(sized.remainingMs);
      }

      let quality: Record<'dense' | 'sparse', Quality> | null = null;
      let qualityCost: QualityCostPoint[] = [];
      let expertLoad: ReportJson['expert_load'] = null;
      let referenceCheck: ReportJson['reference_check'] = null;
      if (options.quality) {
        progress.note('held-out quality, dense');
        const dense = await measureQuality(context, options.quality, { mode: 'dense' });
        progress.step('quality dense');
        const sparse = await measureQuality(context, options.quality, undefined);
        const stats = context.routingStats();
        expertLoad = { source: `runtime counters, plan routing on ${stats.tokens} held-out tokens`, cells: expertLoadFromCounts(stats.expertCounts, stats.tokens) };
        progress.step('quality sparse');
        quality = { dense, sparse };
        if (options.sweep) qualityCost = await sweepQualityCost(context, plan, options.quality, routings, (label) => progress.step(`quality–cost ${label}`));
        if (options.referenceCheck) {
          const subset: QualityInput = { ...options.quality, windows: options.referenceCheck.windows };
          const reference = options.referenceCheck.referenceLoss();
          const planDense = await measureQuality(context, subset, { mode: 'dense' });
          const planSparse = await measureQuality(context, subset, undefined);
          referenceCheck = {
            windows: subset.windows.length,
            tokens: reference.tokens,
            reference_loss: reference.loss,
            plan_dense_loss: planDense.loss,
            plan_sparse_loss: planSparse.loss,
          };
          progress.step('reference cross-check');
        }
      } else if (plan.calibration) {
        expertLoad = { source: `calibration, ${plan.calibration.tokens} tokens`, cells: expertLoadFromCalibration(plan.calibration.layers) };
      }

      progress.note('timing prefill and decode');
      context.resetStats();
      // With a budget, each step weighs its estimated milliseconds, so that the ETA follows the estimate.
      const weigh = (ms: number) => (rates ? ms : 1);
      const rows = await measureThroughput(context, settings, (label, unit) =>
        progress.step(label, rates ? runMs(plan, rates, unit.mode, unit.batch, settings) : 1),
      );
      const stats = context.routingStats();
      machine = remeasureBandwidth(runtime.probe, machine);
      progress.step('bandwidth re-measured', weigh(machineMs));
      if (!expertLoad && stats.tokens > 0) {
        // Random-init plans: the counters saw both modes; dense selects every expert for every token, so
        // subtracting the dense tokens' share leaves the plan routing's load on the benchmark tokens.
        expertLoad = { source: 'runtime counters on benchmark tokens (dense-mode selections removed)', cells: sparseLoadFromMixedCounts(stats.expertCounts, stats.tokens) };
      }

      let expertDtypeRows: ExpertDtypeRow[] = [];
      if (expertDtypes.length) {
        progress.note('quality and decode speed per expert dtype');
        const measured = await measureExpertDtypeRows(runtime, {
          plan,
          dtypes: expertDtypes,
          context,
          open: { threads: options.threads, slots: Math.max(1, qualitySlots), maxContext: Math.max(settings.promptLen + settings.decodeSteps, windowLength) },
          planAt: options.expertDtypes?.planAt ?? reencodedPlans(options.sparseDir, options.outDir),
          quality: options.quality,
          ownQuality: quality?.sparse ?? null,
          settings,
          bandwidthGBs: machine.memory_bandwidth_gbs,
          ...(budget && rates
            ? {
                estimateMs: (dtype: MatrixDtype) => rowsMs(rates as CostRates, [dtype]),
                mayRun: (ms: number) => Date.now() + ms + laterReserveMs <= budget.startedAt + budget.minutes * 60_000,
              }
            : {}),
          onRow: (label, dtype) => progress.step(label, rates ? rowsMs(rates, [dtype]) : 1),
        });
        expertDtypeRows = measured.rows;
        notes.push(...measured.notes);
      }

      // Selection probabilities per expert for the roofline's bytes-per-call: measured load when there is one,
      // a balanced router otherwise.
      const sparseSelection = expertLoad ? groupCells(expertLoad.cells) : uniformSelection(plan, planTopK(plan));
      const analysis = analyse(plan, machine, rows, settings, sparseSelection);

      progress.note('PyTorch peer');
      let peer: PeerReport = { available: false, reason: 'PyTorch peer not run (--no-peer)' };
      if (options.peer.enabled) {
        const shape = { hidden: plan.config.hidden_size, experts: plan.config.num_experts, intermediate: plan.config.moe_intermediate_size, k: Math.round(Math.max(...planTopK(plan))) };
        // Two rounds, alternating PyTorch and ours, so that a burst of load from other processes hits both.
        const torchRounds: PeerResult[][] = [];
        const ourRounds: OurLayerTiming[][] = [];
        for (let round = 0; round < PEER_ROUNDS; round++) {
          const attempt = runPeer({ shape, batches: options.peer.batches, dtypes: options.peer.dtypes, threads: opened.threads, repeats: options.peer.repeats, timeoutMs: options.peer.timeoutMs });
          if (!attempt.available) {
            if (torchRounds.length === 0) peer = attempt;
            break;
          }
          peer = attempt;
          torchRounds.push(attempt.results);
          if (runtime.timeMoeLayer) {
            ourRounds.push(await runtime.timeMoeLayer(shape, { dtypes: options.peer.dtypes, batches: options.peer.batches, threads: opened.threads, repeats: options.peer.repeats }));
          }
        }
        if (peer.available) peer = withOurTimings({ ...peer, results: bestOfRounds(torchRounds) }, bestOfRounds(ourRounds));
      }
      progress.step('peer', weigh(options.peer.enabled && budget ? budget.peerReserveMs : 0));

      let llamaCpp: LlamaCppColumn = { available: false, reason: 'llama.cpp peer not run (--no-llama-cpp)' };
      if (options.llamaCpp?.enabled) {
        progress.note('llama.cpp peer');
        llamaCpp = measureLlamaCpp(options.sparseDir, plan, rows, {
          threads: opened.threads,
          batches: settings.batches,
          promptTokens: settings.promptLen,
          decodeTokens: settings.decodeSteps,
          repeats: options.llamaCpp.repeats,
          log: (line) => progress.note(line),
        });
      }
      progress.step('llama.cpp peer');

      const report: ReportJson = {
        format: 'dsmoe-report',
        version: 1,
        created: new Date().toISOString(),
        kind: options.kind,
        sources: { dense: options.denseDir, sparse: options.sparseDir, shape: options.shapeName },
        model: {
          config: plan.config,
          dtype: plan.dtype,
          ...(plan.dtypes ? { dtypes: plan.dtypes } : {}),
          strategy: { name: plan.strategy.name, k: plan.strategy.k ?? null, epsilon: plan.strategy.epsilon ?? null },
          experts_per_token: planTopK(plan),
          ...(attentionExpertsPerToken(plan) ? { attention_experts_per_token: attentionExpertsPerToken(plan) } : {}),
          layers_note: options.layersNote,
        },
        machine,
        settings: {
          batches: settings.batches, prompt_len: settings.promptLen, decode_steps: settings.decodeSteps,
          repeats: settings.repeats, warmup_rounds: 1, threads: opened.threads,
          ...(opened.residency ? { residency: opened.residency } : {}),
        },
        quality,
        reference_check: referenceCheck,
        params: {
          dense: { total: analysis.per_mode.dense.total_params, active_per_token: analysis.per_mode.dense.active_params_per_token },
          sparse: { total: analysis.per_mode.sparse.total_params, active_per_token: analysis.per_mode.sparse.active_params_per_token },
        },
        cost: analysis.per_mode,
        throughput: rows,
        ideal_speedup: analysis.ideal_speedup,
        measured_speedup: analysis.measured_speedup,
        speedup_batch: analysis.speedup_batch,
        speedup_efficiency: analysis.speedup_efficiency,
        speedups: analysis.speedups,
        memory_bandwidth_gbs: machine.memory_bandwidth_gbs,
        peak_gflops: machine.peak_gflops,
        bandwidth: analysis.bandwidth,
        compute: analysis.compute,
        roofline: analysis.roofline,
        quality_cost: qualityCost,
        expert_dtypes: expertDtypeRows,
        expert_load: expertLoad,
        peer,
        llama_cpp: llamaCpp,
        figures: [],
        notes,
        budget: budgetReport,
      };
      notes.push(...automaticNotes(analysis, machine, report.settings));
      if (plan.layers.some((layer) => (layer.ops.find((op) => op.op === 'experts')?.kept?.length ?? plan.config.num_experts) < plan.config.num_experts)) {
        notes.push('The plan prunes experts: "dense" mode runs every kept expert, while the ideal speedup counts all E experts of the source model.');
      }
      progress.note('rendering figures');
      fs.mkdirSync(options.outDir, { recursive: true });
      report.figures = await writeFigures(report, options.outDir);
      // Everything but the file writes themselves (a few ms) is in the elapsed time.
      if (report.budget && budget) report.budget.elapsed_ms = Date.now() - budget.startedAt;
      writeJsonAtomic(path.join(options.outDir, 'report.json'), report);
      writeFileAtomic(path.join(options.outDir, 'report.md'), reportMarkdown(report));
      progress.step('written', weigh(FILES_RESERVE_MS));
      return report;
    } finally {
      opened.dispose();
    }
  } finally {
    progress.stop();
  }
}

/** Cells → [layer][expert] shares. */
function groupCells(cells: readonly ExpertLoadCell[]): number[][] {
  const layers: number[][] = [];
  for (const cell of cells) (layers[cell.layer] ??= [])[cell.expert] = cell.share;
  return layers.map((layer) => Array.from(layer, (share) => share ?? 0));
}

/**
 * The throughput loop ran the same number of tokens in each mode; dense mode counted one selection per kept
 * expert per token. Removing that leaves the plan's own selections over half the tokens.
 */
function sparseLoadFromMixedCounts(expertCounts: readonly Int32Array[], tokens: number): ExpertLoadCell[] {
  const perMode = tokens / 2;
  return expertLoadFromCounts(
    expertCounts.map((layer) => Int32Array.from(layer, (count) => Math.max(0, count - perMode))),
    perMode,
  );
}


