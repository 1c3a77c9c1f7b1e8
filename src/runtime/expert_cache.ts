/**
 * The expert cache's sizing and counters (issue 13; native/src/model/expert_cache.h): `--expert-cache 25%` holds a
 * quarter of each layer's kept experts in memory, `--expert-cache 512MiB` as many experts per layer as that many
 * bytes hold across all layers; the rest are read from the plan file on demand. Sizes are validated here, before
 * any native call: the cache must hold at least the k experts one token selects in every layer.
 */
import { UserError } from '../errors';
import type { Plan } from '../plan/plan_format';
import { classDtypes, layerOps } from '../plan/plan_format';
import { bytesPerWeight } from '../plan/dtype';

/** How the user asked for the cache: a share of each layer's experts, or a byte budget. */
export type ExpertCacheSize = { share: number } | { bytes: number };

export interface ExpertCacheOptions {
  size: string | ExpertCacheSize; // '25%', '512MiB', '2GB', '1048576', or the parsed form
  prefetch?: boolean; // default true: layer l+1's router on layer l's hidden state queues its likely experts
  prefetchMargin?: number; // experts per token predicted beyond k; default 1
  ioThreads?: number; // pread threads; default 2
  reloadEveryStep?: boolean; // the "no cache" baseline: empty the cache after every forward
  directIo?: boolean; // read with O_DIRECT, bypassing the page cache (the benchmark's stand-in for a plan > RAM)
}

/** What the addon receives (NativeModelSpec.expertCache). */
export interface NativeExpertCacheSpec {
  slots: number; // experts per layer in memory (the addon clamps to each layer's kept count)
  ioThreads: number;
  prefetch: boolean;
  prefetchMargin: number;
  reloadEveryStep: boolean;
  directIo: boolean;
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Parses `25%`, `12.5%`, `512MiB`, `2GB`, `1048576` (bytes); anything else is a one-line UserError naming `flag`. */
export function parseExpertCacheSize(value: string, flag = '--expert-cache'): ExpertCacheSize {
  const text = String(value).trim();
  const expected = 'expected a share of the experts such as 25% or a size such as 512MiB or 2GB';
  const share = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (share) {
    const p = Number(share[1]);
    if (!(p > 0 && p <= 100)) throw new UserError(`${flag} ${value}: a share must be in (0%, 100%]`);
    return { share: p / 100 };
  }
  const bytes = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text);
  const unit = bytes ? UNITS[bytes[2].toLowerCase()] : undefined;
  if (!bytes || unit === undefined) throw new UserError(`${flag} ${JSON.stringify(value)}: ${expected}`);
  const n = Math.floor(Number(bytes[1]) * unit);
  if (!(n > 0) || !Number.isSafeInteger(n)) throw new UserError(`${flag} ${value}: ${expected}`);
  return { bytes: n };
}

/** Bytes of one routed expert (gate_up + down) in each layer, as the plan stores it. */
export function expertBytesPerLayer(plan: Plan): number[] {
  const d = plan.config.hidden_size;
  const size = bytesPerWeight(classDtypes(plan).experts); // exact for blocks: every expert row is whole blocks
  return plan.layers.map((layer) => 3 * layerOps(layer).experts.intermediate_size * d * size);
}

/**
 * Whether layer l stores its routed experts (false for the later layers of a Megrez2 shared pool, which read the
 * pool's first layer's): the cache holds a pool once, so byte budgets and resident sizes count only these layers.
 */
function ownsExperts(plan: Plan, l: number): boolean {
  return (layerOps(plan.layers[l]).experts.pool ?? l) === l;
}

/** The fewest experts per layer a cache may hold: the most any layer selects for one token. */
export function minimumCacheSlots(plan: Plan): number {
  return Math.max(...plan.layers.map((layer) => layerOps(layer).select.k));
}

/** Experts held per layer for `size` in this plan; throws a UserError naming the flag when it is below the minimum. */
export function expertCacheSlots(plan: Plan, size: string | ExpertCacheSize, flag = '--expert-cache'): number {
  const parsed = typeof size === 'string' ? parseExpertCacheSize(size, flag) : size;
  const kept = plan.layers.map((layer) => layerOps(layer).experts.kept.length);
  const most = Math.max(...kept);
  const min = minimumCacheSlots(plan);
  const shown = typeof size === 'string' ? size : 'share' in parsed ? `${parsed.share * 100}%` : `${parsed.bytes}`;
  let slots: number;
  if ('share' in parsed) {
    if (!(parsed.share > 0 && parsed.share <= 1)) throw new UserError(`${flag} ${shown}: a share must be in (0%, 100%]`);
    slots = Math.ceil(parsed.share * most - 1e-9);
  } else {
    if (!(parsed.bytes > 0) || !Number.isSafeInteger(parsed.bytes)) throw new UserError(`${flag} ${shown}: expected a positive number of bytes`);
    const perSlot = expertBytesPerLayer(plan).reduce((a, b, l) => a + (ownsExperts(plan, l) ? b : 0), 0); // one expert in every pool
    slots = Math.floor(parsed.bytes / perSlot);
    if (slots < min) {
      throw new UserError(
        `${flag} ${shown}: holds ${slots} expert(s) per layer (one expert in every layer takes ${perSlot} bytes); ` +
          `the plan selects up to ${min} per token, so the cache needs at least ${min * perSlot} bytes`,
      );
    }
  }
  if (slots < min) {
    throw new UserError(`${flag} ${shown}: holds ${slots} of ${most} experts per layer; the plan selects up to ${min} per token, so the cache needs at least ${min} (${Math.ceil((min / most) * 1000) / 10}%)`);
  }
  return Math.min(slots, most);
}

/**
 * Bytes of the weights file the runtime holds in memory with `slots` experts per layer cached: everything but the
 * routed experts (mapped and read ahead), plus the cache's slots. What the memory check counts instead of the file.
 */
export function residentWeightBytes(plan: Plan, fileBytes: number, slots: number): number {
  const perExpert = expertBytesPerLayer(plan);
  let bytes = fileBytes;
  plan.layers.forEach((layer, l) => {
    if (!ownsExperts(plan, l)) return; // a shared pool is in the file, and in the cache, once
    const kept = layerOps(layer).experts.kept.length;
    bytes -= (kept - Math.min(kept, slots)) * perExpert[l];
  });
  return bytes;
}

/** The addon's cache spec for a plan, with the defaults filled in and every option checked. */
export function nativeExpertCacheSpec(plan: Plan, options: ExpertCacheOptions, flag = '--expert-cache'): NativeExpertCacheSpec {
  const ioThreads = options.ioThreads ?? 2;
  if (!Number.isInteger(ioThreads) || ioThreads < 1 || ioThreads > 64) throw new UserError(`expert cache ioThreads must be an integer in 1..64, got ${options.ioThreads}`);
  const margin = options.prefetchMargin ?? 1;
  if (!Number.isInteger(margin) || margin < 0 || margin > plan.config.num_experts) {
    throw new UserError(`expert cache prefetchMargin must be an integer in 0..${plan.config.num_experts}, got ${options.prefetchMargin}`);
  }
  return {
    slots: expertCacheSlots(plan, options.size, flag),
    ioThreads,
    prefetch: options.prefetch ?? true,
    prefetchMargin: margin,
    reloadEveryStep: options.reloadEveryStep ?? false,
    directIo: options.directIo ?? false,
  };
}

/** The addon's raw counters (NativeModel.expertCacheStats). */
export interface RawExpertCacheStats {
  slots: number;
  hits: number;
  misses: number;
  loads: number;
  bytesRead: number;
  stallSeconds: number;
  prefetches: number;
  predicted: number;
  predictedUsed: number;
  demandedPredicted: number;
  inFlight: number; // reads queued or running: misses + prefetches = loads + inFlight when no read failed
}

/** Counters with the rates a user reads: hit rate, and prefetch recall and precision (null before any prediction). */
export interface ExpertCacheStats extends RawExpertCacheStats {
  hitRate: number | null; // hits / (hits + misses)
  prefetchRecall: number | null; // demanded experts that had been predicted / demanded experts on predicted layers
  prefetchPrecision: number | null; // predicted experts that were demanded / predicted experts
}

export function expertCacheRates(raw: RawExpertCacheStats): ExpertCacheStats {
  const demanded = raw.hits + raw.misses;
  return {
    ...raw,
    hitRate: demanded > 0 ? raw.hits / demanded : null,
    prefetchRecall: raw.demandedPredicted > 0 ? raw.predictedUsed / raw.demandedPredicted : null,
    prefetchPrecision: raw.predicted > 0 ? raw.predictedUsed / raw.predicted : null,
  };
}

/** One line for logs: `expert cache: 4 slots/layer, hit rate 71.2%, …`. */
export function formatExpertCacheStats(s: ExpertCacheStats): string {
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
  return (
    `expert cache: ${s.slots} experts/layer, hit rate ${pct(s.hitRate)} (${s.hits} hits, ${s.misses} misses), ` +
    `${(s.bytesRead / 2 ** 20).toFixed(1)} MiB read, ${s.stallSeconds.toFixed(3)} s stalled, ` +
    `prefetch recall ${pct(s.prefetchRecall)} precision ${pct(s.prefetchPrecision)} (${s.prefetches} prefetched)`
  );
}
