/**
 * The device seam: which device runs a plan. The addon builds one NativeModel per device from the same
 * NativeModelSpec (`device: 'cpu' | 'cuda'`; docs/cuda.md "Addon integration"): the CPU runtime always, the CUDA
 * runtime when the addon was built with nvcc and a GPU is visible. `auto` prefers CUDA and falls back to the CPU.
 */
import { UserError } from '../errors';
import type { NativeAddon, NativeModel, NativeModelSpec } from './native';
import { loadNative } from './native';

export const DEVICES = ['auto', 'cpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];

export interface Backend {
  name: 'cpu' | 'cuda';
  /** 'cpu', or 'cuda (<card name>)': what commands print as the device in use. */
  describe: string;
  createModel(spec: NativeModelSpec): NativeModel;
}

function backend(addon: NativeAddon, name: 'cpu' | 'cuda', describe: string): Backend {
  return { name, describe, createModel: (spec) => new addon.NativeModel({ ...spec, device: name }) };
}

/**
 * `cuda` without a usable GPU is a UserError naming the flag and the reason (no CUDA in this build, or no device);
 * `auto` picks CUDA when `cpuInfo().cuda`, else the CPU. `addon` is injectable for tests.
 */
export function selectBackend(device: Device = 'auto', addon: NativeAddon = loadNative()): Backend {
  if (!(DEVICES as readonly string[]).includes(device)) {
    throw new UserError(`--device must be one of ${DEVICES.join(', ')}, got ${JSON.stringify(device)}`);
  }
  if (device === 'cpu') return backend(addon, 'cpu', 'cpu');
  const info = addon.cpuInfo();
  if (info.cuda) return backend(addon, 'cuda', `cuda (${info.cudaDevice ?? 'GPU 0'})`);
  if (device === 'auto') return backend(addon, 'cpu', 'cpu');
  throw new UserError(
    info.cudaBuilt
      ? '--device cuda: no CUDA device is visible (no NVIDIA driver, no GPU, or too old a driver); use --device cpu or auto'
      : '--device cuda: this build of the runtime has no CUDA part (nvcc was not on PATH when `npm install` built it); ' +
          'install the CUDA toolkit and run `npm run build:native`, or use --device cpu or auto',
  );
}
