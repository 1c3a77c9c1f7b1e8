import { EvaluationContext, ReportMode, routingFor } from './engine';
import { mean, percentile, summarize } from './statistics';
import { mergeBreakdowns, opBreakdown, type OpBreakdown, type OpName, type OpProbe } from '../runtime/op_times';
import { pageFaultsDuring, type PageFaults } from '../runtime/page_faults';

/**
 * Prefill and decode timing at several batch sizes, dense and sparse alternating in one process.
 *
 * Why alternate: on a shared machine the speed drifts (other jobs, frequency scaling); timing dense then sparse in
 * separate blocks puts the drift into the ratio. Each repeat runs both modes back to back at every batch, with the
 * order flipped on odd repeats (ABBA), after one untimed warm-up round that faults in the weights and caches.
 *
 * Workloads (llama.cpp's batch model): prefill = b slots × T prompt tokens in one call, logits for each slot's last
 * row; decode = one token per slot per call, S steps after that prefill. Latency is per call: prefill latency is the
 * time to first token of b prompts, decode latency the time per generated token (per step of b tokens).
 */

export interface ThroughputSettings {
  batches: number[];
  promptLen: number;
  decodeSteps: number;
  repeats: number;
  vocabSize: number;
  seed: number;
  /** Milliseconds on a monotonic clock; tests pass a virtual one to make timings exact. */
  clock?: () => number;
  /** The runtime's per-op counters and sampler: rows then say where each call's time goes. */
  probe?: OpProbe;
}

export interface ThroughputRow {
  mode: ReportMode;
  phase: 'prefill' | 'decode';
  batch: number;
  tokens_per_s: number;
  p50_ms: number;
  p95_ms: number;
  mean_ms: number;
  samples: number;
  /** Mean call time of each timed repeat, in repeat order: pairs with the other mode's for a drift-free ratio. */
  repeat_mean_ms: number[];
  /** Milliseconds per call of each op (the runtime's phase timer; decode includes sampling each row), when timed. */
  ops_ms?: Partial<Record<OpName, number>>;
  /** Page faults of the process during the timed calls, summed over repeats (a reclaimed mapping shows here). */
  page_faults?: PageFaults;
}

/** Number of timed units (prefill+decode runs) `measureThroughput` performs, for the progress bar. */
export function throughputUnits(settings: ThroughputSettings): number {
  return (settings.repeats + 1) * settings.batches.length * 2;
}

/** A deterministic token stream (xorshift) so both modes see identical inputs. */
function promptTokens(batch: number, length: number, vocab: number, seed: number): Int32Array {
  const tokens = new Int32Array(batch * length);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < tokens.length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    tokens[i] = state % vocab;
  }
  return tokens;
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface RunTimes {
  prefillMs: number;
  decodeMs: number[];
  prefillOps: OpBreakdown | null;
  decodeOps: OpBreakdown | null;
  prefillFaults: PageFaults;
  decodeFaults: PageFaults;
}

/** One unit of the loop: a prefill of batch × promptLen tokens, then decodeSteps decode calls; call times in ms. */
export async function runOnce(context: EvaluationContext, mode: ReportMode, batch: number, s: ThroughputSettings): Promise<RunTimes> {
  const routing = routingFor(mode);
  const T = s.promptLen;
  for (let slot = 0; slot < batch; slot++) context.clearSlot(slot);
  const tokens = promptTokens(batch, T, s.vocabSize, s.seed + batch); // [b·T], slot-major
  const slots = new Int32Array(batch * T);
  const positions = new Int32Array(batch * T);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      slots[b * T + t] = b;
      positions[b * T + t] = t;
    }
  }
  const lastRows = Int32Array.from({ length: batch }, (_, b) => b * T + T - 1);
  const now = s.clock ?? nowMs;
  const probe = s.probe;
  const ops0 = probe?.read() ?? null;
  const prefill = await pageFaultsDuring(async () => {
    const start = now();
    await context.evaluate(tokens, slots, positions, lastRows, routing);
    return now() - start;
  });
  const ops1 = probe?.read() ?? null;

  // The sampler runs on every row of each step, as generation would, but outside the timed call; the tokens fed
  // back are the fixed stream, so both modes see identical inputs.
  const stepSlots = Int32Array.from({ length: batch }, (_, b) => b);
  const allRows = Int32Array.from({ length: batch }, (_, b) => b);
  const stepTokens = promptTokens(batch, s.decodeSteps, s.vocabSize, s.seed + 7919 * batch);
  let samplingMs = 0;
  const decode = await pageFaultsDuring(async () => {
    const times: number[] = [];
    for (let step = 0; step < s.decodeSteps; step++) {
      const next = stepTokens.subarray(step * batch, (step + 1) * batch);
      const stepPositions = new Int32Array(batch).fill(T + step);
      const t0 = now();
      const logits = await context.evaluate(next, stepSlots, stepPositions, allRows, routing);
      times.push(now() - t0);
      if (probe?.sample) {
        const s0 = nowMs();
        for (let b = 0; b < batch; b++) probe.sample(logits.subarray(b * s.vocabSize, (b + 1) * s.vocabSize), step);
        samplingMs += nowMs() - s0;
      }
    }
    return times;
  });
  return {
    prefillMs: prefill.value,
    decodeMs: decode.value,
    prefillOps: opBreakdown(ops0, ops1),
    decodeOps: opBreakdown(ops1, probe?.read() ?? null, probe?.sample ? samplingMs / 1e3 : undefined),
    prefillFaults: prefill.faults,
    decodeFaults: decode.faults,
  };
}

export async function measureThroughput(
  context: EvaluationContext,
  settings: ThroughputSettings,
  onUnit: (label: string, unit: { mode: ReportMode; batch: number }) => void = () => undefined,
): Promise<ThroughputRow[]> {
  const modes: ReportMode[] = ['dense', 'sparse'];
  const prefill = new Map<string, number[]>();
  const decode = new Map<string, number[]>();
  const decodeRepeatMeans = new Map<string, number[]>();
  const ops = new Map<string, OpBreakdown[]>(); // by key and phase
  const faults = new Map<string, PageFaults>();
  const add = (k: string, breakdown: OpBreakdown | null, pf: PageFaults) => {
    if (breakdown) ops.set(k, [...(ops.get(k) ?? []), breakdown]);
    const sum = faults.get(k) ?? { minor: 0, major: 0 };
    faults.set(k, { minor: sum.minor + pf.minor, major: sum.major + pf.major });
  };
  const measured = (k: string) => {
    const merged = mergeBreakdowns(ops.get(k) ?? []);
    return { ...(merged ? { ops_ms: merged.ms_per_call } : {}), ...(faults.has(k) ? { page_faults: faults.get(k) } : {}) };
  };
  const key = (mode: ReportMode, batch: number) => `${mode}/${batch}`;
  for (let repeat = -1; repeat < settings.repeats; repeat++) {
    const order = repeat % 2 === 1 ? [...modes].reverse() : modes;
    for (const batch of settings.batches) {
      for (const mode of order) {
        const times = await runOnce(context, mode, batch, settings);
        onUnit(`${repeat < 0 ? 'warm-up' : `repeat ${repeat + 1}/${settings.repeats}`} ${mode} b=${batch}`, { mode, batch });
        if (repeat < 0) continue;
        const k = key(mode, batch);
        prefill.set(k, [...(prefill.get(k) ?? []), times.prefillMs]);
        decode.set(k, [...(decode.get(k) ?? []), ...times.decodeMs]);
        decodeRepeatMeans.set(k, [...(decodeRepeatMeans.get(k) ?? []), mean(times.decodeMs)]);
        add(`${k}/prefill`, times.prefillOps, times.prefillFaults);
        add(`${k}/decode`, times.decodeOps, times.decodeFaults);
      }
    }
  }
  const rows: ThroughputRow[] = [];
  for (const mode of modes) {
    for (const batch of settings.batches) {
      const p = summarize(prefill.get(key(mode, batch)) ?? []);
      // Throughput from the mean call time (total tokens ÷ total time); latency from the percentiles.
      rows.push({
        mode, phase: 'prefill', batch,
        tokens_per_s: (batch * settings.promptLen) / (p.mean / 1000),
        p50_ms: p.p50, p95_ms: p.p95, mean_ms: p.mean, samples: p.count,
        repeat_mean_ms: prefill.get(key(mode, batch)) ?? [],
        ...measured(`${key(mode, batch)}/prefill`),
      });
      const d = summarize(decode.get(key(mode, batch)) ?? []);
      rows.push({
        mode, phase: 'decode', batch,
        tokens_per_s: batch / (d.mean / 1000),
        p50_ms: d.p50, p95_ms: d.p95, mean_ms: d.mean, samples: d.count,
        repeat_mean_ms: decodeRepeatMeans.get(key(mode, batch)) ?? [],
        ...measured(`${key(mode, batch)}/decode`),
      });
    }
  }
  return rows;
}

/**
 * Sparse speedup over dense for one phase and batch: the median over repeats of dense ÷ sparse call time, each
 * pair measured back to back, so slow drift of the machine cancels. Falls back to the ratio of mean throughputs.
 */
export function speedupAt(rows: readonly ThroughputRow[], phase: 'prefill' | 'decode', batch: number): number {
  const find = (mode: ReportMode) => rows.find((r) => r.mode === mode && r.phase === phase && r.batch === batch);
  const dense = find('dense');
  const sparse = find('sparse');
  if (!dense || !sparse) return NaN;
  const pairs = Math.min(dense.repeat_mean_ms.length, sparse.repeat_mean_ms.length);
  if (pairs === 0) return sparse.tokens_per_s / dense.tokens_per_s;
  const ratios = Array.from({ length: pairs }, (_, r) => dense.repeat_mean_ms[r] / sparse.repeat_mean_ms[r]);
  return percentile(ratios, 50);
}
