import * as tf from '@tensorflow/tfjs';

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

/**
 * Wall time per tfjs kernel on one backend: every registered kernel of the backend is wrapped while installed.
 * Valid for synchronous backends (wasm, cpu), where a kernel's work is done when its function returns. Kernels
 * that a kernel calls directly (not through the registry) count toward their caller, so times do not overlap.
 */
export class KernelTimer {
  private readonly totals = new Map<string, { calls: number; ms: number }>();
  private readonly wrapped: tf.KernelConfig[] = [];

  constructor(private readonly backendName: string) {}

  install(): void {
    if (this.wrapped.length) return;
    for (const config of tf.getKernelsForBackend(this.backendName)) {
      const { kernelName, kernelFunc } = config;
      const totals = this.totals;
      tf.unregisterKernel(kernelName, this.backendName);
      tf.registerKernel({
        ...config,
        kernelFunc: (args) => {
          const start = performance.now();
          try {
            return kernelFunc(args);
          } finally {
            const entry = totals.get(kernelName) ?? { calls: 0, ms: 0 };
            entry.calls += 1;
            entry.ms += performance.now() - start;
            totals.set(kernelName, entry);
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
  }

  /** Kernels by total time, largest first. */
  report(): KernelTime[] {
    return [...this.totals.entries()]
      .map(([kernel, t]) => ({ kernel, calls: t.calls, ms: t.ms }))
      .sort((a, b) => b.ms - a.ms);
  }
}
