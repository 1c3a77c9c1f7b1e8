import { UserError } from '../../errors';
import { loadNative } from '../../runtime/native';
import { isSupportedBackend, supportedBackends } from './backend_tensors';
import { ComputeDtype, computeDtypes } from './native_matmul';
import { registerNativeKernels, restoreTfjsKernels } from './registry';

/** `dsmoe train --kernels`: the addon's kernels inside tfjs, tfjs's own, or native when possible. */
export type KernelChoice = 'auto' | 'native' | 'tfjs';
export const kernelChoices: KernelChoice[] = ['auto', 'native', 'tfjs'];

export interface KernelSelection {
  kernels: 'native' | 'tfjs';
  registered: string[]; // tfjs kernel names served by the addon
  compute: ComputeDtype; // the matrix products' arithmetic
  /** why 'auto' kept tfjs's kernels */
  reason?: string;
}

/**
 * Applies a kernel choice to the active tfjs backend (`tfjsBackendName`: 'wasm', 'cpu', 'tensorflow', …); call it
 * right after the backend is selected. 'auto' uses the native kernels when the backend is one they serve and the
 * addon loads; an explicit 'native' that cannot be honoured is an error (the user asked for it).
 */
export function applyKernelChoice(choice: KernelChoice, tfjsBackendName: string, threads?: number, compute: ComputeDtype = 'f32'): KernelSelection {
  if (!kernelChoices.includes(choice)) throw new UserError(`unknown kernels "${choice}"; expected one of ${kernelChoices.join(', ')}`);
  if (!computeDtypes.includes(compute)) throw new UserError(`unknown compute dtype "${compute}"; expected one of ${computeDtypes.join(', ')}`);
  restoreTfjsKernels();
  // bf16 products exist only in the addon's GEMM: a run that asked for them never falls back silently to f32.
  const needNative = (reason: string) => new UserError(`compute dtype bf16 needs the native kernels: ${reason}`);
  if (choice === 'tfjs') {
    if (compute === 'bf16') throw needNative('--kernels tfjs was given');
    return { kernels: 'tfjs', registered: [], compute: 'f32' };
  }
  if (!isSupportedBackend(tfjsBackendName)) {
    const reason = `native kernels serve the ${supportedBackends.join(' and ')} backends, not ${tfjsBackendName}`;
    if (compute === 'bf16') throw needNative(reason);
    if (choice === 'native') throw new UserError(`--kernels native: ${reason}`);
    return { kernels: 'tfjs', registered: [], compute: 'f32', reason };
  }
  try {
    loadNative();
  } catch (error) {
    if (choice === 'native' || compute === 'bf16') throw error;
    return { kernels: 'tfjs', registered: [], compute: 'f32', reason: (error as Error).message };
  }
  return { kernels: 'native', registered: registerNativeKernels(tfjsBackendName, { threads, compute }).registered, compute };
}

/** One line for the training log. */
export function describeKernels(selection: KernelSelection): string {
  if (selection.kernels === 'native') {
    const products = selection.compute === 'bf16' ? '; products in bf16, f32 sums and weights' : '';
    return `kernels: native (${selection.registered.join(', ')}, fused SwiGLU and cross-entropy, and the AdamW update from the addon${products})`;
  }
  return `kernels: tfjs${selection.reason ? ` (${selection.reason})` : ''}`;
}
