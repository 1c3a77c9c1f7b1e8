import { UserError } from '../../errors';
import { loadNative } from '../../runtime/native';
import { isSupportedBackend, supportedBackends } from './backend_tensors';
import { registerNativeKernels, restoreTfjsKernels } from './registry';

/** `dsmoe train --kernels`: the addon's kernels inside tfjs, tfjs's own, or native when possible. */
export type KernelChoice = 'auto' | 'native' | 'tfjs';
export const kernelChoices: KernelChoice[] = ['auto', 'native', 'tfjs'];

export interface KernelSelection {
  kernels: 'native' | 'tfjs';
  registered: string[]; // tfjs kernel names served by the addon
  /** why 'auto' kept tfjs's kernels */
  reason?: string;
}

/**
 * Applies a kernel choice to the active tfjs backend (`tfjsBackendName`: 'wasm', 'cpu', 'tensorflow', …); call it
 * right after the backend is selected. 'auto' uses the native kernels when the backend is one they serve and the
 * addon loads; an explicit 'native' that cannot be honoured is an error (the user asked for it).
 */
export function applyKernelChoice(choice: KernelChoice, tfjsBackendName: string, threads?: number): KernelSelection {
  if (!kernelChoices.includes(choice)) throw new UserError(`unknown kernels "${choice}"; expected one of ${kernelChoices.join(', ')}`);
  restoreTfjsKernels();
  if (choice === 'tfjs') return { kernels: 'tfjs', registered: [] };
  if (!isSupportedBackend(tfjsBackendName)) {
    const reason = `native kernels serve the ${supportedBackends.join(' and ')} backends, not ${tfjsBackendName}`;
    if (choice === 'native') throw new UserError(`--kernels native: ${reason}`);
    return { kernels: 'tfjs', registered: [], reason };
  }
  try {
    loadNative();
  } catch (error) {
    if (choice === 'native') throw error;
    return { kernels: 'tfjs', registered: [], reason: (error as Error).message };
  }
  return { kernels: 'native', registered: registerNativeKernels(tfjsBackendName, { threads }).registered };
}

/** One line for the training log. */
export function describeKernels(selection: KernelSelection): string {
  if (selection.kernels === 'native') return `kernels: native (${selection.registered.join(', ')} from the addon)`;
  return `kernels: tfjs${selection.reason ? ` (${selection.reason})` : ''}`;
}
