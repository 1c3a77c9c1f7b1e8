// RMSNorm lives with the model's other fused element-wise ops (one kernel forward and backward where the native
// kernels are registered, the tfjs composition elsewhere).
export { rmsNorm } from './fused_ops';
