/**
 * `--residency mmap|populate|mlock|read`, one definition for the commands that run a plan (generate, eval, serve,
 * report). Parsed by src/runtime/residency.ts (a bad value is a one-line UserError naming the flag), not by yargs
 * `choices`, whose error is a usage page.
 */
import { DEFAULT_RESIDENCY, LARGE_PLAN_RESIDENCY, parseResidency, RESIDENCIES, type Residency } from '../runtime/residency';

export function residencyOption() {
  return {
    type: 'string' as const,
    describe:
      `how the plan's weights are held in memory (CPU): ${RESIDENCIES.join(', ')}; default ${DEFAULT_RESIDENCY} when the plan takes at most half the available memory, else ${LARGE_PLAN_RESIDENCY} (mmap with --expert-cache). mmap maps the file and reads pages on first use; ` +
      'populate reads every page at load; mlock also locks them (a refused lock is a warning: raise `ulimit -l`); read copies the ' +
      'file into anonymous memory with huge pages (llama.cpp\'s --no-mmap). Results are identical; only speed and memory differ',
  };
}

/** The flag's value, checked (UserError naming --residency); undefined when not given (the runtime's default). */
export function residencyFromArgs(args: { residency?: string }): Residency | undefined {
  return args.residency === undefined ? undefined : parseResidency(args.residency, '--residency');
}
