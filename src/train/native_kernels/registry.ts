import * as tf from '@tensorflow/tfjs';
import { setFusedOps } from '../../model/fused_ops';
import { setTransposeFlagProducts } from '../../model/matmul';
import { UserError } from '../../errors';
import { loadNative, NativeAddon } from '../../runtime/native';
import { BackendKind, isSupportedBackend, supportedBackends } from './backend_tensors';
import { batchMatMulKernel } from './batch_mat_mul';
import { fusedKernelConfigs } from './fused_ops';
import { installNativeOptimizer, uninstallNativeOptimizer } from './fused_optimizer';
import { fusedMatMulKernel } from './fused_mat_mul';
import { aliasingIdentityKernel } from './identity';
import { viewSliceKernel } from './slice';
import { leadingAxesSumKernel } from './sum';
import { ComputeDtype, computeDtypes, NativeMatMulContext } from './native_matmul';

export interface NativeKernelOptions {
  /** addon threads per kernel call; default: every hardware thread the addon sees */
  threads?: number;
  /** the addon to use (tests pass a loaded one); default: `loadNative()` */
  addon?: NativeAddon;
  /** the products' arithmetic (default f32); bf16 needs AVX-512 BF16 (`cpuInfo().bf16`) */
  compute?: ComputeDtype;
}

type KernelFactory = (ctx: NativeMatMulContext, kind: BackendKind, fallback: tf.KernelFunc) => tf.KernelFunc;

/** The tfjs kernels replaced, by tfjs kernel name, and the backends where replacing them helps. */
const nativeKernelFactories: { kernelName: string; backends: BackendKind[]; factory: KernelFactory }[] = [
  { kernelName: 'BatchMatMul', backends: ['wasm', 'cpu'], factory: batchMatMulKernel },
  { kernelName: '_FusedMatMul', backends: ['wasm', 'cpu'], factory: fusedMatMulKernel },
  // The cpu backend's Identity already shares storage.
  { kernelName: 'Identity', backends: ['wasm'], factory: (_ctx, _kind, fallback) => aliasingIdentityKernel(fallback) },
  // The wasm backend's Slice copies its whole input out of the heap first.
  { kernelName: 'Slice', backends: ['wasm'], factory: (_ctx, kind, fallback) => viewSliceKernel(kind, fallback) },
  // Both backends sum leading axes by transposing them to the end first (bias gradients).
  { kernelName: 'Sum', backends: ['wasm', 'cpu'], factory: (_ctx, kind, fallback) => leadingAxesSumKernel(kind, fallback) },
];

/** The backend's own kernels that a native one replaced, to restore (`--kernels tfjs`). */
const replaced = new Map<string, tf.KernelConfig>(); // key `${backend}/${kernel}`
/** Kernels the backend did not have (the fused ones), to remove on restore. */
const added = new Set<string>(); // `${backend}/${kernel}`

/**
 * Replaces tfjs's matrix-product kernels of `backendName` ('wasm' or 'cpu') with the addon's multithreaded ones
 * (and wasm's copying Identity with a sharing one), keeping the originals for `restoreTfjsKernels()`. Call it
 * after the backend is selected (importing a backend registers its own kernels over these). Idempotent.
 * Throws a UserError (from `loadNative`) when the addon is not built.
 */
export function registerNativeKernels(backendName: string, options: NativeKernelOptions = {}): { registered: string[] } {
  if (!isSupportedBackend(backendName)) {
    throw new Error(`native training kernels support the ${supportedBackends.join(' and ')} backends, not ${backendName}`);
  }
  const addon = options.addon ?? loadNative();
  const threads = options.threads ?? addon.cpuInfo().threads;
  if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`native kernel threads must be a positive integer, got ${threads}`);
  const compute = options.compute ?? 'f32';
  if (!computeDtypes.includes(compute)) throw new Error(`compute dtype must be one of ${computeDtypes.join(', ')}, got ${compute}`);
  if (compute === 'bf16' && !addon.cpuInfo().bf16) throw new UserError(bf16Unsupported(addon));
  const ctx: NativeMatMulContext = { kernels: addon.kernels, threads, compute };
  const registered: string[] = [];
  for (const { kernelName, backends, factory } of nativeKernelFactories) {
    if (!backends.includes(backendName)) continue;
    const key = `${backendName}/${kernelName}`;
    const current = tf.getKernel(kernelName, backendName);
    if (!current) continue; // the backend has no such kernel: nothing to replace or to fall back on
    const original = replaced.get(key) ?? current;
    tf.unregisterKernel(kernelName, backendName);
    // The original's setupFunc stays: when the backend initialises after this call, the fallback is set up too.
    tf.registerKernel({ kernelName, backendName, setupFunc: original.setupFunc, kernelFunc: factory(ctx, backendName, original.kernelFunc) });
    replaced.set(key, original);
    registered.push(kernelName);
  }
  // The native BatchMatMul reads transposed operands in its packers, so the model's gradients pass flags instead
  // of the explicit transposes written for tfjs-wasm (src/model/matmul.ts).
  if (registered.includes('BatchMatMul')) setTransposeFlagProducts(backendName, true);
  // New kernels (not replacements) that the model calls by name where the backend has them (src/model/fused_ops.ts).
  for (const { kernelName, kernelFunc } of fusedKernelConfigs(addon.kernels, backendName, threads)) {
    if (tf.getKernel(kernelName, backendName)) tf.unregisterKernel(kernelName, backendName);
    tf.registerKernel({ kernelName, backendName, kernelFunc });
    added.add(`${backendName}/${kernelName}`);
  }
  setFusedOps(backendName, true);
  // Not a tfjs kernel: the optimizer step's element-wise work, which src/train/adamw.ts hands to the addon.
  installNativeOptimizer(backendName, addon.kernels, threads);
  return { registered };
}

/** Puts back every tfjs kernel that `registerNativeKernels` replaced. Returns the names restored. */
export function restoreTfjsKernels(): { restored: string[] } {
  const restored: string[] = [];
  for (const [key, original] of replaced) {
    if (tf.getKernel(original.kernelName, original.backendName)) tf.unregisterKernel(original.kernelName, original.backendName);
    tf.registerKernel(original);
    restored.push(key);
    if (original.kernelName === 'BatchMatMul') setTransposeFlagProducts(original.backendName, false);
  }
  for (const key of added) {
    const [backendName, kernelName] = key.split('/');
    if (tf.getKernel(kernelName, backendName)) tf.unregisterKernel(kernelName, backendName);
  }
  added.clear();
  for (const kind of supportedBackends) {
    uninstallNativeOptimizer(kind);
    setFusedOps(kind, false);
  }
  replaced.clear();
  return { restored };
}

/** The kernel names currently served by the addon, per backend (`wasm/BatchMatMul`, …). */
export function nativeKernelsInUse(): string[] {
  return [...replaced.keys()];
}

/** Why bf16 compute cannot run here: one line naming what the CPU has and what it needs. */
export function bf16Unsupported(addon: NativeAddon): string {
  const info = addon.cpuInfo();
  const isa = info.simd === info.detected ? info.simd : `${info.simd} (forced by DSMOE_SIMD; the CPU has ${info.detected})`;
  return `compute dtype bf16: expected a CPU with AVX-512 BF16 and the AVX-512 kernels, this one runs ${isa} without them; use f32`;
}
