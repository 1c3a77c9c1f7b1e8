import type { Analysis } from './analysis';
import type { MachineReport } from './machine';
import type { ReportJson } from './report_json';
import { formatBytes } from './format';

/**
 * Notes the report writes about its own figures, so that a reader does not draw the wrong conclusion from an
 * honest number: when the ideal speedup model does not apply, or measured/ideal is short of 0.9, say why.
 */

/** Weights smaller than this stay in the last-level cache between decode steps (a generous bound for servers). */
export const CACHE_RESIDENT_BYTES = 64 * 2 ** 20;

export function automaticNotes(analysis: Analysis, machine: MachineReport, settings: ReportJson['settings']): string[] {
  const notes: string[] = [];
  const dense = analysis.per_mode.dense.weight_bytes_per_token;
  const efficiency = analysis.speedup_efficiency;
  if (dense < CACHE_RESIDENT_BYTES) {
    notes.push(
      `The dense model reads only ${formatBytes(dense)} of weights per token: that fits in the CPU caches, so a ` +
        'batch-1 decode step is bound by per-call overhead (thread wake-ups, the Node↔native call, attention, ' +
        'sampling-side work) rather than memory bandwidth, and the weight-bytes ideal speedup is an upper bound ' +
        'that small models cannot reach. Judge speed on a realistic shape (`dsmoe report --shape ds-moe-1b --random-init`).',
    );
  } else if (Number.isFinite(efficiency) && efficiency < 0.9) {
    notes.push(
      `Measured/ideal at batch ${analysis.speedup_batch} is ${(efficiency * 100).toFixed(0)}%. The ideal counts weight ` +
        'bytes only; work that does not shrink with sparsity (attention over the KV cache, router and top-k, ' +
        'thread synchronisation per matrix) takes the same time in both modes and pulls the ratio toward 1. ' +
        `The achieved bandwidth rows above show how close each mode gets to the ${machine.memory_bandwidth_gbs.toFixed(1)} GB/s measured.`,
    );
  }
  if (dense >= CACHE_RESIDENT_BYTES && Number.isFinite(efficiency) && efficiency > 1.1) {
    notes.push(
      `Measured exceeds the weight-bytes ideal (${(efficiency * 100).toFixed(0)}%): costs that grow with the number of ` +
        'experts run (a dispatch and a thread synchronisation per expert matrix) favour sparse beyond the byte ratio.',
    );
  }
  const decode1 = analysis.bandwidth.find((b) => b.mode === 'dense');
  if (decode1 && dense >= CACHE_RESIDENT_BYTES && decode1.fraction_of_measured < 0.5) {
    notes.push(
      `Batch-1 decode reaches only ${(decode1.fraction_of_measured * 100).toFixed(0)}% (dense) of the measured ` +
        'bandwidth: the runtime is not yet bandwidth-bound at batch 1, so its decode speed has headroom and the ' +
        'speedup reflects per-expert overheads as well as bytes.',
    );
  }
  if (decode1 && decode1.fraction_of_measured > 1.05) {
    notes.push(
      `The dense decode "achieves" ${(decode1.fraction_of_measured * 100).toFixed(0)}% of the measured triad bandwidth: ` +
        'part of the weights is served from cache, or the machine was busier during the bandwidth measurement than during the run.',
    );
  }
  if (settings.repeats < 3) notes.push(`Only ${settings.repeats} timed repeat(s): ratios are less robust to a noisy machine.`);
  return notes;
}
