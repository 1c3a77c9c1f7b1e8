/** Native (addon) kernels inside tfjs for training: see docs/training-kernels.md. */
export { registerNativeKernels, restoreTfjsKernels, nativeKernelsInUse, type NativeKernelOptions } from './registry';
export { KernelTimer, type KernelTime } from './kernel_timer';
