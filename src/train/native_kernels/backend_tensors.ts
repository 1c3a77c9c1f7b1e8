import * as tf from '@tensorflow/tfjs';

/**
 * Float32 storage of a tensor on the backend that owns it, and output tensors made by that backend, so native
 * kernels read the backend's own buffers without a copy.
 *
 * - wasm: a tensor's data lives in the wasm heap at `dataIdMap.get(dataId).memoryOffset`; a Float32Array view on
 *   `wasm.HEAPU8.buffer` at that offset goes to N-API as is. The heap can grow (and its ArrayBuffer be replaced)
 *   whenever the backend allocates, so views are taken after every allocation of a kernel call, never kept.
 * - cpu: a tensor's data is a plain TypedArray (`data.get(dataId).values`).
 */

/** The parts of tfjs-backend-wasm's BackendWasm that native kernels use. */
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.TypedArray): tf.TensorInfo;
}

/** The parts of tfjs-backend-cpu's MathBackendCPU that native kernels use. */
interface CpuBackendLike {
  data: { get(dataId: object): { values?: tf.TypedArray } | undefined };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.TypedArray): tf.TensorInfo;
}

export type BackendKind = 'wasm' | 'cpu';

/** Backends whose buffers the native kernels know how to reach. */
export const supportedBackends: readonly BackendKind[] = ['wasm', 'cpu'];

export function isSupportedBackend(name: string): name is BackendKind {
  return (supportedBackends as readonly string[]).includes(name);
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A view (no copy) of a float32 tensor's values in the backend's storage. */
export function float32View(kind: BackendKind, backend: tf.KernelBackend, info: tf.TensorInfo): Float32Array {
  const size = elementCount(info.shape);
  if (kind === 'wasm') {
    const wasm = backend as unknown as WasmBackendLike;
    const data = wasm.dataIdMap.get(info.dataId);
    if (!data) throw new Error('native kernel: tensor data is not on the wasm backend');
    return new Float32Array(wasm.wasm.HEAPU8.buffer, data.memoryOffset, size);
  }
  const data = (backend as unknown as CpuBackendLike).data.get(info.dataId);
  const values = data?.values;
  if (!(values instanceof Float32Array)) throw new Error('native kernel: tensor data is not a Float32Array on the cpu backend');
  return values.length === size ? values : values.subarray(0, size);
}

/**
 * A new float32 output tensor of the backend and a writable view of its storage. On wasm the view is only valid
 * until the backend's next allocation (see above).
 */
export function float32Output(kind: BackendKind, backend: tf.KernelBackend, shape: number[]): { info: tf.TensorInfo; values: Float32Array } {
  if (kind === 'wasm') {
    const info = (backend as unknown as WasmBackendLike).makeOutput(shape, 'float32');
    return { info, values: float32View(kind, backend, info) };
  }
  const values = new Float32Array(elementCount(shape));
  return { info: (backend as unknown as CpuBackendLike).makeTensorInfo(shape, 'float32', values), values };
}
