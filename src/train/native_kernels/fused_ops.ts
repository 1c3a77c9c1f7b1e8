import * as tf from '@tensorflow/tfjs';
import { fusedKernelNames } from '../../model/fused_ops';
import type { NativeKernels } from '../../runtime/native';
import { BackendKind, float32Output, float32View } from './backend_tensors';

/**
 * The model's fused element-wise kernels (src/model/fused_ops.ts) on the addon (native/src/kernels/
 * train_elementwise.h): new tfjs kernels, not replacements — the model calls them by name where the backend has
 * them. Inputs are read in place from the backend's storage and outputs written in place into tensors the backend
 * allocates (views taken after the last allocation of each call: the wasm heap may grow).
 */
export type FusedKernels = Pick<NativeKernels, 'routedSwiglu' | 'routedSwigluBackward' | 'softmaxXent' | 'softmaxXentBackward' | 'rmsnormTrain' | 'rmsnormBackward' | 'causalSoftmax' | 'causalSoftmaxBackward'>;

export function fusedKernelConfigs(kernels: FusedKernels, kind: BackendKind, threads: number): { kernelName: string; kernelFunc: tf.KernelFunc }[] {
  const view = (backend: tf.KernelBackend, t: tf.TensorInfo) => float32View(kind, backend, t);
  return [
    {
      kernelName: fusedKernelNames.routedSwiglu,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { gate, up, w } = inputs as { gate: tf.TensorInfo; up: tf.TensorInfo; w: tf.TensorInfo };
        const { experts, width } = attrs as unknown as { experts: number; width: number };
        const b = backend as tf.KernelBackend;
        const out = float32Output(kind, b, gate.shape);
        kernels.routedSwiglu(view(b, gate), view(b, up), view(b, w), gate.shape[0], experts, width, { out: view(b, out.info), threads });
        return out.info;
      },
    },
    {
      kernelName: fusedKernelNames.routedSwigluGrad,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { gate, up, w, dy } = inputs as { gate: tf.TensorInfo; up: tf.TensorInfo; w: tf.TensorInfo; dy: tf.TensorInfo };
        const { experts, width } = attrs as unknown as { experts: number; width: number };
        const b = backend as tf.KernelBackend;
        const dgate = float32Output(kind, b, gate.shape).info;
        const dup = float32Output(kind, b, up.shape).info;
        const dw = float32Output(kind, b, w.shape).info;
        kernels.routedSwigluBackward(view(b, gate), view(b, up), view(b, w), view(b, dy), gate.shape[0], experts, width, {
          dgate: view(b, dgate),
          dup: view(b, dup),
          dw: view(b, dw),
          threads,
        });
        return [dgate, dup, dw];
      },
    },
    {
      kernelName: fusedKernelNames.softmaxXent,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { logits } = inputs as { logits: tf.TensorInfo };
        const { targets } = attrs as unknown as { targets: Int32Array };
        const b = backend as tf.KernelBackend;
        const [n, v] = logits.shape;
        const out = float32Output(kind, b, [n]);
        kernels.softmaxXent(view(b, logits), targets, n, v, { out: view(b, out.info), threads });
        return out.info;
      },
    },
    {
      kernelName: fusedKernelNames.softmaxXentGrad,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { logits, dy } = inputs as { logits: tf.TensorInfo; dy: tf.TensorInfo };
        const { targets } = attrs as unknown as { targets: Int32Array };
        const b = backend as tf.KernelBackend;
        const [n, v] = logits.shape;
        const out = float32Output(kind, b, logits.shape);
        kernels.softmaxXentBackward(view(b, logits), targets, view(b, dy), n, v, { out: view(b, out.info), threads });
        return out.info;
      },
    },
    {
      kernelName: fusedKernelNames.rmsNorm,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { x, weight } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
        const { eps } = attrs as unknown as { eps: number };
        const b = backend as tf.KernelBackend;
        const [n, d] = x.shape;
        const out = float32Output(kind, b, x.shape);
        kernels.rmsnormTrain(view(b, x), view(b, weight), n, d, eps, { out: view(b, out.info), threads });
        return out.info;
      },
    },
    {
      kernelName: fusedKernelNames.rmsNormGrad,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { x, weight, dy } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo; dy: tf.TensorInfo };
        const { eps } = attrs as unknown as { eps: number };
        const b = backend as tf.KernelBackend;
        const [n, d] = x.shape;
        const dx = float32Output(kind, b, x.shape).info;
        const dweight = float32Output(kind, b, weight.shape).info;
        kernels.rmsnormBackward(view(b, x), view(b, weight), view(b, dy), n, d, eps, { dx: view(b, dx), dw: view(b, dweight), threads });
        return [dx, dweight];
      },
    },
    {
      kernelName: fusedKernelNames.causalSoftmax,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { x } = inputs as { x: tf.TensorInfo };
        const { scale, period } = attrs as unknown as { scale: number; period: number };
        const b = backend as tf.KernelBackend;
        const [R, C] = rowsOfLastAxis(x.shape);
        const out = float32Output(kind, b, x.shape);
        kernels.causalSoftmax(view(b, x), R, C, scale, period, { out: view(b, out.info), threads });
        return out.info;
      },
    },
    {
      kernelName: fusedKernelNames.causalSoftmaxGrad,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { y, dy } = inputs as { y: tf.TensorInfo; dy: tf.TensorInfo };
        const { scale } = attrs as unknown as { scale: number };
        const b = backend as tf.KernelBackend;
        const [R, C] = rowsOfLastAxis(y.shape);
        const out = float32Output(kind, b, y.shape);
        kernels.causalSoftmaxBackward(view(b, y), view(b, dy), R, C, scale, { out: view(b, out.info), threads });
        return out.info;
      },
    },
  ];
}

/** A tensor as rows of its last axis: [rows, width]. */
function rowsOfLastAxis(shape: number[]): [number, number] {
  const width = shape[shape.length - 1];
  return [shape.reduce((a, v) => a * v, 1) / width, width];
}
