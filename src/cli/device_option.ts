/**
 * `--device auto|cpu|cuda`, one definition for the commands that run a plan (generate, eval, report, serve). The
 * choice is checked by yargs; what it means (and the UserError for cuda without a GPU) is src/runtime/backend.ts.
 */
import { DEVICES, type Device } from '../runtime/backend';

export function deviceOption(defaultDevice: Device, why = '') {
  return {
    type: 'string' as const,
    choices: [...DEVICES],
    default: defaultDevice,
    describe: `runtime device: auto (CUDA when a GPU is usable, else the CPU), cpu, or cuda${why}`,
  };
}

export type { Device };
