/**
 * Where a forward pass spends its time: the native runtime's wall time per phase (native/src/model/op_timer.h,
 * on when the spec has `profileOps`), plus the sampler, timed in TypeScript around the addon's sampling kernel.
 * The benchmarks read the counters before and after a run and divide by its calls.
 */

/** The phases the native forward marks, in op_timer.h's order. */
export const NATIVE_OPS = ['embedding', 'norm', 'qkv', 'attention', 'attn_out', 'router', 'experts', 'shared_expert', 'lm_head'] as const;
export type NativeOp = (typeof NATIVE_OPS)[number];
/** Every op a breakdown may hold: the native phases and the sampler. */
export const OPS = [...NATIVE_OPS, 'sampling'] as const;
export type OpName = (typeof OPS)[number];

/** NativeModel.opTimes(): seconds per phase summed over `forwards` calls since the model was made. */
export interface RawOpTimes {
  forwards: number;
  seconds: Record<NativeOp, number>;
}

/** Milliseconds per call of each op over an interval of `calls` calls. */
export interface OpBreakdown {
  calls: number;
  ms_per_call: Partial<Record<OpName, number>>;
}

/**
 * The op times of the calls between two readings of the counters, per call; `samplingSeconds` (timed by the
 * caller over the same calls) is added as the `sampling` op. Null when either reading is null (profiling off).
 */
export function opBreakdown(before: RawOpTimes | null, after: RawOpTimes | null, samplingSeconds?: number): OpBreakdown | null {
  if (!before || !after) return null;
  const calls = after.forwards - before.forwards;
  if (calls <= 0) return null;
  const ms: Partial<Record<OpName, number>> = {};
  for (const op of NATIVE_OPS) ms[op] = ((after.seconds[op] - before.seconds[op]) * 1e3) / calls;
  if (samplingSeconds !== undefined) ms.sampling = (samplingSeconds * 1e3) / calls;
  return { calls, ms_per_call: ms };
}

/** Sum of the ops' milliseconds per call (what the phases account for; the rest of a call is buffers and the addon). */
export function opTotalMs(breakdown: OpBreakdown): number {
  return Object.values(breakdown.ms_per_call).reduce((sum, ms) => sum + (ms ?? 0), 0);
}

/** "experts 61% · attn_out 12% · …": each op's share of `callMs` (the measured call time), largest first. */
export function formatOpShares(breakdown: OpBreakdown, callMs: number, top = 4): string {
  const entries = Object.entries(breakdown.ms_per_call).filter(([, ms]) => (ms ?? 0) > 0) as [OpName, number][];
  entries.sort((a, b) => b[1] - a[1]);
  return entries
    .slice(0, top)
    .map(([op, ms]) => `${op} ${((100 * ms) / callMs).toFixed(0)}%`)
    .join(' · ');
}

/** What a timing loop reads around its calls: the runtime's counters and, for decode, the sampler. */
export interface OpProbe {
  /** The model's counters (NativeModel.opTimes); null when profiling is off. */
  read(): RawOpTimes | null;
  /** Samples one row of logits as generation does; its time is the `sampling` op of decode calls. */
  sample?(row: Float32Array, counter: number): number;
}

/** One breakdown over several intervals: each op's mean per call, weighted by the intervals' calls. */
export function mergeBreakdowns(parts: readonly OpBreakdown[]): OpBreakdown | null {
  const calls = parts.reduce((sum, part) => sum + part.calls, 0);
  if (calls === 0) return null;
  const ms: Partial<Record<OpName, number>> = {};
  for (const op of OPS) {
    const having = parts.filter((part) => part.ms_per_call[op] !== undefined);
    if (having.length) ms[op] = having.reduce((sum, part) => sum + (part.ms_per_call[op] as number) * part.calls, 0) / calls;
  }
  return { calls, ms_per_call: ms };
}
