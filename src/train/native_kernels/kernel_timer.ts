import * as tf from '@tensorflow/tfjs';
import { matMulGeometry } from './matmul_geometry';

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

/** Time of one matrix-product shape (all calls of BatchMatMul / _FusedMatMul with that shape and those flags). */
export interface ProductTime {
  /** e.g. `BatchMatMul 8×[768×64]·[64×256] tB` */
  shape: string;
  calls: number;
  ms: number;
  /** 2·batch·M·N·K over all calls */
  flops: number;
}

const productKernels = new Set(['BatchMatMul', '_FusedMatMul']);

/** The shape key and FLOPs of one product call, or null when the inputs are not a product's. */
function productShape(kernelName: string, args: tf.NamedTensorInfoMap | object, attrs: object): { shape: string; flops: number } | null {
  const { a, b } = args as { a?: tf.TensorInfo; b?: tf.TensorInfo };
  if (!a || !b) return null;
  const { transposeA, transposeB } = attrs as { transposeA?: boolean; transposeB?: boolean };
  const g = matMulGeometry(a.shape, b.shape, !!transposeA, !!transposeB);
  const batch = g.aBatch.length;
  const flags = `${transposeA ? ' tA' : ''}${transposeB ? ' tB' : ''}`;
  return { shape: `${kernelName} ${batch}×[${g.M}×${g.K}]·[${g.K}×${g.N}]${flags}`, flops: 2 * batch * g.M * g.N * g.K };
}

/**
 * Wall time per tfjs kernel on one backend: every registered kernel of the backend is wrapped while installed.
 * Valid for synchronous backends (wasm, cpu), where a kernel's work is done when its function returns. Kernels
 * that a kernel calls directly (not through the registry) count toward their caller, so times do not overlap.
 * Matrix products are also timed per shape (`products()`), to see which products run far from the FMA peak.
 */
export class KernelTimer {
  private readonly totals = new Map<string, { calls: number; ms: number }>();
  private readonly productTotals = new Map<string, ProductTime>();
  private readonly wrapped: tf.KernelConfig[] = [];

  constructor(private readonly backendName: string) {}

  install(): void {
    if (this.wrapped.length) return;
    for (const config of tf.getKernelsForBackend(this.backendName)) {
      const { kernelName, kernelFunc } = config;
      const totals = this.totals;
      const productTotals = this.productTotals;
      const isProduct = productKernels.has(kernelName);
      tf.unregisterKernel(kernelName, this.backendName);
      tf.registerKernel({
        ...config,
        kernelFunc: (args) => {
          const start = performance.now();
          try {
            return kernelFunc(args);
          } finally {
            const ms = performance.now() - start;
            const entry = totals.get(kernelName) ?? { calls: 0, ms: 0 };
            entry.calls += 1;
            entry.ms += ms;
            totals.set(kernelName, entry);
            const product = isProduct ? productShape(kernelName, args.inputs, args.attrs ?? {}) : null;
            if (product) {
              const p = productTotals.get(product.shape) ?? { shape: product.shape, calls: 0, ms: 0, flops: 0 };
              p.calls += 1;
              p.ms += ms;
              p.flops += product.flops;
              productTotals.set(product.shape, p);
            }
          }
        },
      });
      this.wrapped.push(config);
    }
  }

  /** Puts back the kernels that were registered when `install` ran. */
  uninstall(): void {
    for (const config of this.wrapped) {
      tf.unregisterKernel(config.kernelName, this.backendName);
      tf.registerKernel(config);
    }
    this.wrapped.length = 0;
  }

  reset(): void {
    this.totals.clear();
    this.productTotals.clear();
  }

  /** Kernels by total time, largest first. */
  report(): KernelTime[] {
    return [...this.totals.entries()]
      .map(([kernel, t]) => ({ kernel, calls: t.calls, ms: t.ms }))
      .sort((a, b) => b.ms - a.ms);
  }

  /** Matrix products by shape, largest total time first. */
  products(): ProductTime[] {
    return [...this.productTotals.values()].map((p) => ({ ...p })).sort((a, b) => b.ms - a.ms);
  }
}
