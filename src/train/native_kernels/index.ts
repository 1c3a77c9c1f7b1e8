/** Native (addon) kernels inside tfjs for training: see docs/training-kernels.md. */
export { registerNativeKernels, restoreTfjsKernels, nativeKernelsInUse, type NativeKernelOptions } from './registry';
export { applyKernelChoice, describeKernels, kernelChoices, type KernelChoice, type KernelSelection } from './kernel_choice';
export { KernelTimer, type KernelTime, type ProductTime } from './kernel_timer';
