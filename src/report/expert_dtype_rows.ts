import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { CLASS_DTYPE_FLAGS, classDtypeProblems, isQuantized, MATRIX_DTYPES, matrixDtypeOfFlag, type ClassDtypeFlag } from '../plan/dtype';
import type { MatrixDtype, PlanDtype } from '../plan/plan_format';
import { classDtypes } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { costAtClassDtypes, writePlanWithClassDtypes } from '../plan/requantize_plan';
import type { Quality, QualityInput } from '../runtime/quality';
import { measureQuality } from '../runtime/quality';
import type { EvaluationContext } from './engine';
import { dtypeBytes, expertDtype, keptExperts, type PlanView } from './plan_view';
import type { ReportRuntime } from './report_runtime';
import type { ExpertDtypeRow } from './report_json';
export type { ExpertDtypeRow };
import { percentile } from './statistics';
import { runOnce, type ThroughputSettings } from './throughput';
import { callMs, runMs, type CostRates, type RunShape } from './time_budget';

/**
 * The quality–cost table's rows per bit-width (issue 13): the report's plan with its routed experts stored at each
 * dtype (the plan's own, q8, q4, and every other quantized dtype src/plan/dtype.ts registers), scored on the same
 * held-out tokens with the plan's routing, with the weight bytes a token reads and the batch-1 decode speed. Rows at
 * another dtype run on a copy of the plan re-encoded from the plan's stored values (src/plan/requantize_plan.ts),
 * written under the report's folder and removed after its row.
 */

/** Untimed and timed batch-1 runs (prefill + decode steps) per row. */
const ROW_WARMUP = 1;
const ROW_REPEATS = 2;

/** Every dtype `--expert-dtypes` takes, as plan.json spells it: the flags of `dsmoe convert` and their plan names. */
export function parseExpertDtypes(flag: string, value: string): MatrixDtype[] {
  if (value.trim() === 'none') return [];
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  const out: MatrixDtype[] = [];
  for (const name of names) {
    const dtype = (CLASS_DTYPE_FLAGS as readonly string[]).includes(name)
      ? matrixDtypeOfFlag(name as ClassDtypeFlag)
      : MATRIX_DTYPES.find((d) => d === name);
    if (!dtype) throw new UserError(`${flag}: unknown dtype ${JSON.stringify(name)} (expected a list of ${CLASS_DTYPE_FLAGS.join(', ')}, or none)`);
    if (!out.includes(dtype)) out.push(dtype);
  }
  return out;
}

/** The default rows: the plan's expert dtype first, then every registered quantized dtype. */
export function defaultExpertDtypes(plan: Pick<PlanView, 'dtype' | 'dtypes'>): MatrixDtype[] {
  const own = expertDtype(plan) as MatrixDtype;
  const quantized = CLASS_DTYPE_FLAGS.map(matrixDtypeOfFlag).filter((d) => isQuantized(d) && d !== own);
  return [own, ...quantized];
}

/**
 * The rows to measure, the plan's own dtype first (the others are compared with it). A dtype this model's shape
 * cannot store (rows that do not fill its blocks) is an error when the user named it and a note when it was a default.
 */
export function resolveExpertDtypes(plan: PlanView, dtypes: readonly MatrixDtype[], given: boolean): { dtypes: MatrixDtype[]; notes: string[] } {
  const own = expertDtype(plan) as MatrixDtype;
  const ordered = dtypes.includes(own) ? [own, ...dtypes.filter((d) => d !== own)] : [...dtypes];
  const attention = (plan.dtypes?.attention ?? plan.dtype) as MatrixDtype;
  const kept: MatrixDtype[] = [];
  const notes: string[] = [];
  for (const dtype of ordered) {
    const problem = classDtypeProblems(plan.config, { experts: dtype, attention })[0];
    if (!problem) kept.push(dtype);
    else if (given) throw new UserError(`--expert-dtypes: ${problem}`);
    else notes.push(`No row for experts at ${dtype}: ${problem}.`);
  }
  return { dtypes: kept, notes };
}

/** The report's plan view with its experts stored at `dtype`: the figures every row's bytes come from. */
export function viewAtExpertDtype(plan: PlanView, dtype: MatrixDtype): PlanView {
  const classes = { experts: dtype, attention: (plan.dtypes?.attention ?? plan.dtype) as MatrixDtype };
  const differs = classes.experts !== plan.dtype || classes.attention !== plan.dtype;
  const kept = keptExperts(plan).map((k) => k.length);
  const cost = costAtClassDtypes({ config: plan.config, dtype: plan.dtype as PlanDtype, cost: plan.cost }, kept, classes);
  const { dtypes: _replaced, ...rest } = plan;
  return { ...rest, ...(differs ? { dtypes: classes } : {}), cost };
}

/** Expert weights of every stored layer at `dtype`, in bytes (what re-encoding writes, what a cache pages in). */
function storedExpertBytes(plan: PlanView, dtype: string): number {
  const weights = keptExperts(plan).reduce((sum, kept) => sum + kept.length, 0) * 3 * plan.config.hidden_size * plan.config.moe_intermediate_size;
  return weights * dtypeBytes(dtype);
}

/**
 * Estimated milliseconds of the rows (for `--budget`): re-encoding each other dtype's experts at
 * `requantizeValuesPerMs`, scoring `qualityTokens` held-out tokens, and the batch-1 decode runs.
 */
export function expertDtypeRowsMs(
  plan: PlanView,
  dtypes: readonly MatrixDtype[],
  rates: CostRates,
  shape: RunShape,
  qualityTokens: number,
  requantizeValuesPerMs: number,
): number {
  const own = expertDtype(plan);
  let ms = 0;
  for (const dtype of dtypes) {
    const view = viewAtExpertDtype(plan, dtype);
    if (dtype !== own) {
      ms += storedExpertBytes(plan, own) / dtypeBytes(own) / requantizeValuesPerMs;
      if (qualityTokens > 0) ms += callMs(view, rates, 'sparse', qualityTokens);
    }
    ms += (ROW_WARMUP + ROW_REPEATS) * runMs(view, rates, 'sparse', 1, shape);
  }
  return ms;
}

/** A plan folder whose experts are stored at a dtype, and how to be rid of it. */
export interface PlanAtDtype {
  dir: string;
  dispose(): void;
}

/** Copies of the plan in `sparseDir` re-encoded at a dtype, written under `scratchDir` and removed by dispose. */
export function reencodedPlans(sparseDir: string, scratchDir: string): (dtype: MatrixDtype) => PlanAtDtype {
  return (dtype) => {
    const loaded = readPlan(sparseDir);
    const dir = path.join(scratchDir, `.plan-experts-${dtype}.tmp-${process.pid}`);
    fs.rmSync(dir, { recursive: true, force: true });
    try {
      writePlanWithClassDtypes(loaded, dir, { experts: dtype, attention: classDtypes(loaded.plan).attention });
    } catch (error) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    return { dir, dispose: () => fs.rmSync(dir, { recursive: true, force: true }) };
  };
}

export interface ExpertDtypeRowsRequest {
  plan: PlanView;
  dtypes: readonly MatrixDtype[];
  /** The report's own opened plan (its row needs no copy) and the options to open each copy with. */
  context: EvaluationContext;
  open: { threads?: number; slots: number; maxContext: number };
  planAt: (dtype: MatrixDtype) => PlanAtDtype;
  quality: QualityInput | null;
  /** The plan's own sparse quality, already measured on the same windows. */
  ownQuality: Quality | null;
  settings: ThroughputSettings;
  bandwidthGBs: number;
  /** Called before each row with its estimated ms; false skips the row (its time is not left in the budget). */
  mayRun?: (estimatedMs: number, dtype: MatrixDtype) => boolean;
  estimateMs?: (dtype: MatrixDtype) => number;
  onRow?: (label: string, dtype: MatrixDtype) => void;
}

export async function measureExpertDtypeRows(runtime: ReportRuntime, request: ExpertDtypeRowsRequest): Promise<{ rows: ExpertDtypeRow[]; notes: string[] }> {
  const own = expertDtype(request.plan);
  const rows: ExpertDtypeRow[] = [];
  const notes: string[] = [];
  for (const dtype of request.dtypes) {
    const estimate = request.estimateMs?.(dtype) ?? 0;
    if (request.mayRun && !request.mayRun(estimate, dtype)) {
      notes.push(`Row for experts at ${dtype} skipped: its estimated ${(estimate / 1000).toFixed(0)} s no longer fit the budget.`);
      request.onRow?.(`experts ${dtype} (skipped)`, dtype);
      continue;
    }
    const view = viewAtExpertDtype(request.plan, dtype);
    let measured: { quality: Quality | null; decodeMs: number[] };
    if (dtype === own) {
      measured = { quality: request.ownQuality, decodeMs: await timeDecode(request.context, request.settings) };
    } else {
      const copy = request.planAt(dtype);
      try {
        const opened = await runtime.openPlan(copy.dir, request.open);
        try {
          const quality = request.quality ? await measureQuality(opened.context, request.quality, undefined) : null;
          measured = { quality, decodeMs: await timeDecode(opened.context, request.settings) };
        } finally {
          opened.dispose();
        }
      } finally {
        copy.dispose();
      }
    }
    const p50 = percentile(measured.decodeMs, 50);
    const tokensPerS = 1000 / p50;
    const bytes = view.cost.active_weight_bytes_per_token;
    const first = rows[0]?.quality ?? null;
    rows.push({
      expert_dtype: dtype,
      source: dtype === own ? 'plan' : 're-encoded',
      bits_per_weight: 8 * dtypeBytes(dtype),
      weight_bytes_per_token: bytes,
      expert_bytes: storedExpertBytes(request.plan, dtype),
      quality: measured.quality
        ? { loss: measured.quality.loss, perplexity: measured.quality.perplexity, bits_per_byte: measured.quality.bits_per_byte, tokens: measured.quality.tokens }
        : null,
      perplexity_change: measured.quality && first ? measured.quality.perplexity / first.perplexity - 1 : measured.quality ? 0 : null,
      decode_p50_ms: p50,
      decode_tokens_per_s: tokensPerS,
      decode_gbs: (bytes * tokensPerS) / 1e9,
      fraction_of_bandwidth: (bytes * tokensPerS) / 1e9 / request.bandwidthGBs,
    });
    request.onRow?.(`experts ${dtype}`, dtype);
  }
  return { rows, notes };
}

/** Batch-1 decode call times with the plan's routing: ROW_WARMUP untimed runs, then ROW_REPEATS timed ones. */
async function timeDecode(context: EvaluationContext, settings: ThroughputSettings): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < ROW_WARMUP + ROW_REPEATS; run++) {
    const once = await runOnce(context, 'sparse', 1, settings);
    if (run >= ROW_WARMUP) times.push(...once.decodeMs);
  }
  return times;
}
