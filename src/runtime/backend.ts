/**
 * The device seam: a Backend turns a NativeModelSpec into a running model. Only the CPU backend (the native addon)
 * exists today; a CUDA backend plugs in here with the same op set (its own issue) and `device: 'auto'` will prefer it
 * when `cpuInfo().cuda` reports a GPU.
 */
import { UserError } from '../errors';
import type { NativeModel, NativeModelSpec } from './native';
import { loadNative } from './native';

export type Device = 'cpu' | 'cuda' | 'auto';

export interface Backend {
  name: 'cpu' | 'cuda';
  createModel(spec: NativeModelSpec): NativeModel;
}

const cpuBackend: Backend = {
  name: 'cpu',
  createModel(spec) {
    const addon = loadNative();
    return new addon.NativeModel(spec);
  },
};

export function selectBackend(device: Device = 'auto'): Backend {
  if (device === 'cuda') {
    throw new UserError('device "cuda": this build of the runtime has no CUDA backend; use device "cpu" (or "auto")');
  }
  return cpuBackend;
}
