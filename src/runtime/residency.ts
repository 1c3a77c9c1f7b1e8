/**
 * How the plan's weights are held in memory (native/src/model/mapped_file.h; llama.cpp's --mmap / --mlock /
 * --no-mmap): `mmap` maps the file and pages it in on first touch; `populate` maps it and reads every page at load
 * (MAP_POPULATE); `mlock` populates and locks the pages (a refused lock, e.g. by RLIMIT_MEMLOCK, is a warning and
 * leaves `populate`); `read` copies the file into anonymous memory backed by transparent huge pages and closes it.
 * Results are bit-identical in every mode; only load time, page faults and TLB misses differ. docs/design.md §5
 * says which is the default and why.
 */
import { UserError } from '../errors';

export const RESIDENCIES = ['mmap', 'populate', 'mlock', 'read'] as const;
export type Residency = (typeof RESIDENCIES)[number];

/** The default of every command that runs a plan on the CPU (docs/design.md §5 "Weights residency"). */
export const DEFAULT_RESIDENCY: Residency = 'populate';

/**
 * The residency when none is asked for: DEFAULT_RESIDENCY on the CPU; `mmap` with the expert cache (which reads
 * experts itself and must not hold them all) and on CUDA (the host copy only feeds the upload).
 */
export function defaultResidency(device: 'cpu' | 'cuda', expertCache: boolean): Residency {
  return device === 'cpu' && !expertCache ? DEFAULT_RESIDENCY : 'mmap';
}

/** A residency from a flag or option value; anything else is a one-line UserError naming the flag. */
export function parseResidency(value: unknown, flag = '--residency'): Residency {
  if (typeof value === 'string' && (RESIDENCIES as readonly string[]).includes(value)) return value as Residency;
  throw new UserError(`${flag} must be one of ${RESIDENCIES.join(', ')}, got ${JSON.stringify(value)}`);
}
