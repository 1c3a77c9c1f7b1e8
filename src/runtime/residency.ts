/**
 * How the plan's weights are held in memory (native/src/model/mapped_file.h; llama.cpp's --mmap / --mlock /
 * --no-mmap): `mmap` maps the file and pages it in on first touch; `populate` maps it and reads every page at load
 * (MAP_POPULATE); `mlock` populates and locks the pages (a refused lock, e.g. by RLIMIT_MEMLOCK, is a warning and
 * leaves `populate`); `read` copies the file into anonymous memory backed by transparent huge pages and closes it.
 * Results are bit-identical in every mode; only load time, page faults and TLB misses differ. docs/design.md §5
 * says which is the default and why.
 */
import * as os from 'os';
import { UserError } from '../errors';

export const RESIDENCIES = ['mmap', 'populate', 'mlock', 'read'] as const;
export type Residency = (typeof RESIDENCIES)[number];

/**
 * The CPU default for a plan that fits twice over in available memory (docs/design.md §5 "Weights residency"):
 * anonymous huge pages kept batch-1 decode at 60-95 % of the triad where the page-cache mapping fell to 15-55 %.
 */
export const DEFAULT_RESIDENCY: Residency = 'read';
/** The CPU default for a larger plan: a private copy would compete with the page cache for the same memory. */
export const LARGE_PLAN_RESIDENCY: Residency = 'populate';

/**
 * The residency when none is asked for: `read` on the CPU when the weights take at most half of the available
 * memory, else `populate`; `mmap` with the expert cache (which reads experts itself and must not hold them all) and
 * on CUDA (the host copy only feeds the upload).
 */
export function defaultResidency(device: 'cpu' | 'cuda', expertCache: boolean, weightBytes = 0, availableBytes = os.freemem()): Residency {
  if (device !== 'cpu' || expertCache) return 'mmap';
  return weightBytes <= availableBytes / 2 ? DEFAULT_RESIDENCY : LARGE_PLAN_RESIDENCY;
}

/** A residency from a flag or option value; anything else is a one-line UserError naming the flag. */
export function parseResidency(value: unknown, flag = '--residency'): Residency {
  if (typeof value === 'string' && (RESIDENCIES as readonly string[]).includes(value)) return value as Residency;
  throw new UserError(`${flag} must be one of ${RESIDENCIES.join(', ')}, got ${JSON.stringify(value)}`);
}
