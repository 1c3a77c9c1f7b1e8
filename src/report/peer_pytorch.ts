import { spawnSync } from 'child_process';
import * as path from 'path';

/**
 * The peer column: the same MoE layer shape timed in PyTorch eager, run the way transformers runs Qwen2-MoE
 * (scripts/peer_pytorch.py). Optional by nature: when no Python with torch is found the report says so and moves on.
 */

export interface PeerShape {
  hidden: number;
  experts: number;
  intermediate: number;
  k: number;
}

export interface PeerResult {
  dtype: 'f32' | 'bf16';
  batch: number;
  k: number;
  min_ms: number;
  p50_ms: number;
  p95_ms: number;
  mean_ms: number;
  tokens_per_s: number;
  samples: number;
}

/** Our runtime's time for the same single MoE layer (see moe_layer_timing.ts for how it is isolated). */
export interface OurLayerTiming {
  dtype: string;
  batch: number;
  mean_ms: number;
  min_ms: number;
  p50_ms: number;
  method: string;
}

export type PeerReport =
  | { available: false; reason: string }
  | {
      available: true;
      python: string;
      torch_version: string;
      blas: string;
      threads: number;
      shape: PeerShape;
      results: PeerResult[];
      ours: OurLayerTiming[];
      /** PyTorch ÷ our best call time per (dtype, batch) over all rounds: > 1 means our runtime is faster. */
      comparison: { dtype: string; batch: number; torch_ms: number; ours_ms: number; speedup: number }[];
    };

export const PEER_SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'peer_pytorch.py');

/**
 * The first interpreter that imports torch: $DSMOE_PYTHON, then python3 on PATH, then the system one (Debian's
 * python3-torch installs into /usr/bin/python3, which a pyenv or venv python3 on PATH does not see).
 */
export function findTorchPython(
  candidates: string[] = [process.env.DSMOE_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c),
): { python: string } | { reason: string } {
  for (const python of [...new Set(candidates)]) {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
    if (probe.status === 0) return { python };
  }
  return { reason: `PyTorch not available (tried ${[...new Set(candidates)].join(', ')}: import torch failed)` };
}

export interface PeerOptions {
  shape: PeerShape;
  batches: number[];
  dtypes: ('f32' | 'bf16')[];
  threads: number;
  repeats: number;
  timeoutMs: number;
  /** An interpreter already known to import torch (skips the search). */
  python?: string;
}

export function runPeer(options: PeerOptions): PeerReport {
  const found = options.python ? { python: options.python } : findTorchPython();
  if ('reason' in found) return { available: false, reason: found.reason };
  const args = [
    PEER_SCRIPT,
    `--hidden=${options.shape.hidden}`,
    `--experts=${options.shape.experts}`,
    `--intermediate=${options.shape.intermediate}`,
    `--k=${options.shape.k}`,
    `--batches=${options.batches.join(',')}`,
    `--dtypes=${options.dtypes.join(',')}`,
    `--threads=${options.threads}`,
    `--repeats=${options.repeats}`,
  ];
  const run = spawnSync(found.python, args, {
    encoding: 'utf8',
    timeout: options.timeoutMs,
    env: { ...process.env, OMP_NUM_THREADS: String(options.threads), OPENBLAS_NUM_THREADS: String(options.threads) },
  });
  if (run.status !== 0) {
    const why = run.error ? run.error.message : (run.stderr || '').trim().split('\n').pop() || `exit ${run.status}`;
    return { available: false, reason: `PyTorch peer failed: ${why}` };
  }
  return parsePeerOutput(run.stdout, found.python);
}

/** Parses the script's one JSON line; anything malformed becomes an "unavailable" entry with the reason. */
export function parsePeerOutput(stdout: string, python: string): PeerReport {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch {
    return { available: false, reason: 'PyTorch peer printed no JSON' };
  }
  if (parsed.available !== true) return { available: false, reason: String(parsed.reason ?? 'PyTorch not available') };
  const results = Array.isArray(parsed.results) ? (parsed.results as PeerResult[]) : [];
  return {
    available: true,
    python,
    torch_version: String(parsed.torch_version),
    blas: String(parsed.blas),
    threads: Number(parsed.threads),
    shape: parsed.shape as PeerShape,
    results,
    ours: [],
    comparison: [],
  };
}

/** Pairs our layer timings with PyTorch's at the same dtype and batch. */
export function withOurTimings(peer: PeerReport, ours: OurLayerTiming[]): PeerReport {
  if (!peer.available) return peer;
  const comparison = ours.flatMap((o) =>
    peer.results
      .filter((r) => r.batch === o.batch && r.dtype === o.dtype)
      .map((r) => ({ dtype: r.dtype, batch: o.batch, torch_ms: r.min_ms, ours_ms: o.min_ms, speedup: r.min_ms / o.min_ms })),
  );
  return { ...peer, ours, comparison };
}

/**
 * Merges timing rounds taken alternately (PyTorch, ours, PyTorch, ours …): per (dtype, batch) the best call of any
 * round, since load from other processes can only slow a call, and the sample statistics of the round with that call.
 */
export function bestOfRounds<T extends { dtype: string; batch: number; min_ms: number }>(rounds: readonly (readonly T[])[]): T[] {
  const best = new Map<string, T>();
  for (const round of rounds) {
    for (const row of round) {
      const key = `${row.dtype}/${row.batch}`;
      const current = best.get(key);
      if (!current || row.min_ms < current.min_ms) best.set(key, row);
    }
  }
  return [...best.values()];
}
