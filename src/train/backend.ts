import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors';

/**
 * Training backend choice at run time: the best one that loads, in the order
 * tfjs-node-gpu (CUDA) > tfjs-node (native TensorFlow CPU) > wasm > cpu.
 *
 * wasm comes before cpu because it is measured faster here: `node dist/bench/train.js` on 2 cores gave the tiny
 * recipe ≈ 2,000+ tokens/s on wasm against ≈ 100 on the pure-JavaScript cpu backend (README, "Benchmarks").
 */
export type BackendName = 'node-gpu' | 'node' | 'wasm' | 'cpu';
export type BackendChoice = BackendName | 'auto';
export const backendChoices: BackendChoice[] = ['auto', 'node-gpu', 'node', 'wasm', 'cpu'];

const preference: BackendName[] = ['node-gpu', 'node', 'wasm', 'cpu'];

export interface BackendSelection {
  name: BackendName;
  /** tfjs's own name of the active backend ('tensorflow', 'wasm', 'cpu') */
  tfjsName: string;
  /** why each better backend was not used, in preference order */
  skipped: { name: BackendName; reason: string }[];
}

/** Loads one backend and makes it active; throws with the reason when it cannot. */
async function activate(name: BackendName): Promise<string> {
  if (name === 'node-gpu' || name === 'node') {
    const pkg = name === 'node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
    try {
      // Optional dependencies: absent when their install failed (no internet, no prebuilt binary).
      require(pkg);
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new Error(code === 'MODULE_NOT_FOUND' ? `${pkg} is not installed` : `${pkg} failed to load: ${(error as Error).message}`);
    }
    if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but its backend did not initialise`);
    return 'tensorflow';
  }
  if (name === 'wasm') {
    // Importing registers the backend; in Node its .wasm binaries are read from the package's dist folder.
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'));
    wasm.setWasmPaths(dist + path.sep);
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
    return 'wasm';
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
  return 'cpu';
}

/**
 * Activates the requested backend, or with 'auto' the best that loads. An explicit choice that fails is an error
 * (the user asked for it); 'auto' records why each better one was skipped.
 */
export async function selectBackend(choice: BackendChoice = 'auto'): Promise<BackendSelection> {
  if (!backendChoices.includes(choice)) {
    throw new UserError(`unknown backend "${choice}"; expected one of ${backendChoices.join(', ')}`);
  }
  if (choice !== 'auto') {
    try {
      return { name: choice, tfjsName: await activate(choice), skipped: [] };
    } catch (error) {
      throw new UserError(`backend ${choice} is not available: ${(error as Error).message}`);
    }
  }
  const skipped: BackendSelection['skipped'] = [];
  for (const name of preference) {
    try {
      return { name, tfjsName: await activate(name), skipped };
    } catch (error) {
      skipped.push({ name, reason: (error as Error).message });
    }
  }
  throw new UserError(`no tfjs backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

/** One line for the log: which backend trains and why the better ones were skipped. */
export function describeBackend(selection: BackendSelection): string {
  const skipped = selection.skipped.map((s) => `${s.name} skipped (${s.reason})`);
  return `backend: ${selection.name}${skipped.length ? ' — ' + skipped.join('; ') : ''}`;
}
