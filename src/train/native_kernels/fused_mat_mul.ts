import * as tf from '@tensorflow/tfjs';
import { BackendKind, float32View } from './backend_tensors';
import { broadcastShapes, broadcastSourceIndex } from './matmul_geometry';
import { NativeMatMulContext, nativeMatMul } from './native_matmul';

export type FusedActivation = 'linear' | 'relu' | 'relu6' | 'elu' | 'prelu' | 'leakyrelu' | 'sigmoid';

interface FusedMatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  activation: FusedActivation;
  leakyreluAlpha?: number;
}

/**
 * Adds `addend` (broadcast to the output's shape) to `values` in place. The common cases, a bias over the last
 * axis or a full-size tensor, avoid building an index map.
 */
function addBroadcast(values: Float32Array, outShape: number[], addend: Float32Array, addendShape: number[]): void {
  const cols = outShape[outShape.length - 1];
  if (addend.length === values.length && broadcastShapes(addendShape, outShape).length === outShape.length) {
    for (let i = 0; i < values.length; i++) values[i] += addend[i];
  } else if (addend.length === cols && addendShape[addendShape.length - 1] === cols) {
    for (let i = 0; i < values.length; i++) values[i] += addend[i % cols];
  } else {
    const source = broadcastSourceIndex(addendShape, outShape);
    for (let i = 0; i < values.length; i++) values[i] += addend[source[i]];
  }
}

/** The activations of tfjs's fused kernels (tfjs-core `applyActivation`), in place. */
function applyActivation(
  values: Float32Array,
  outShape: number[],
  activation: FusedActivation,
  leakyreluAlpha: number,
  preluWeights: { values: Float32Array; shape: number[] } | null,
): void {
  const n = values.length;
  switch (activation) {
    case 'linear':
      return;
    case 'relu':
      for (let i = 0; i < n; i++) values[i] = values[i] < 0 ? 0 : values[i];
      return;
    case 'relu6':
      for (let i = 0; i < n; i++) values[i] = Math.min(Math.max(values[i], 0), 6);
      return;
    case 'elu':
      for (let i = 0; i < n; i++) values[i] = values[i] >= 0 ? values[i] : Math.exp(values[i]) - 1;
      return;
    case 'sigmoid':
      for (let i = 0; i < n; i++) values[i] = 1 / (1 + Math.exp(-values[i]));
      return;
    case 'leakyrelu':
      for (let i = 0; i < n; i++) values[i] = values[i] < 0 ? leakyreluAlpha * values[i] : values[i];
      return;
    case 'prelu': {
      if (!preluWeights) throw new Error('_FusedMatMul: prelu activation without preluActivationWeights');
      const source = broadcastSourceIndex(preluWeights.shape, outShape);
      for (let i = 0; i < n; i++) if (values[i] < 0) values[i] *= preluWeights.values[source[i]];
      return;
    }
    default:
      throw new Error(`_FusedMatMul: unknown activation ${activation as string}`);
  }
}

/**
 * tfjs's `_FusedMatMul` (`tf.fused.matMul`): the addon's gemm, then bias and activation applied in place on the
 * output. Its gradient is tfjs's own (written with plain matMuls, which run on the native BatchMatMul).
 */
export function fusedMatMulKernel(ctx: NativeMatMulContext, kind: BackendKind, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as {
      a: tf.TensorInfo;
      b: tf.TensorInfo;
      bias?: tf.TensorInfo;
      preluActivationWeights?: tf.TensorInfo;
    };
    const attrs = args.attrs as unknown as FusedMatMulAttrs;
    const extras = [bias, preluActivationWeights].filter((t): t is tf.TensorInfo => t != null);
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || extras.some((t) => t.dtype !== 'float32')) return fallback(args);
    const backend = args.backend as tf.KernelBackend;
    const out = nativeMatMul(ctx, kind, backend, a, b, !!attrs.transposeA, !!attrs.transposeB);
    const outShape = out.info.shape;
    // No allocation since the output's: these views and out.values stay valid on wasm.
    if (bias) addBroadcast(out.values, outShape, float32View(kind, backend, bias), bias.shape);
    const prelu = preluActivationWeights
      ? { values: float32View(kind, backend, preluActivationWeights), shape: preluActivationWeights.shape }
      : null;
    applyActivation(out.values, outShape, attrs.activation ?? 'linear', attrs.leakyreluAlpha ?? 0.2, prelu);
    return out.info;
  };
}
