/**
 * What the tests of the addon's training kernels inside tfjs (test/train/native_kernels) share: a describe that is
 * skipped, with a one-line warning, when the addon is not built, and deterministic pseudo-random inputs.
 */
import * as fs from 'fs';
import { ADDON_PATH } from '../../src/runtime/native';

/** `describe` when the addon is built; otherwise `describe.skip`, after warning that `what` was skipped. */
export function describeWithAddonFor(what: string): jest.Describe {
  if (fs.existsSync(ADDON_PATH)) return describe;
  // eslint-disable-next-line no-console
  console.warn(`${what} skipped: the addon is not built (${ADDON_PATH}); run \`npm run build:native\``);
  return describe.skip;
}

/** n values in [−scale, scale) from a linear congruential generator seeded with `seed` (the same on every machine). */
export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}
