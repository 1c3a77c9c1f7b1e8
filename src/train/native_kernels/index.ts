/** Native (addon) kernels inside tfjs for training: see docs/training-kernels.md. */
export { registerNativeKernels, restoreTfjsKernels, nativeKernelsInUse, bf16Unsupported, type NativeKernelOptions } from './registry';
export { computeDtypes, type ComputeDtype } from './native_matmul';
export { applyKernelChoice, describeKernels, kernelChoices, type KernelChoice, type KernelSelection } from './kernel_choice';
export { KernelTimer, type KernelTime, type ProductTime } from './kernel_timer';
