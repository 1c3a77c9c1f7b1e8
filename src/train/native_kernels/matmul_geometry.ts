/**
 * Shape arithmetic of tfjs's BatchMatMul / _FusedMatMul: a [...batchA, M, K] (or [..., K, M] with transposeA) times
 * b [...batchB, K, N] (or [..., N, K] with transposeB), outer (batch) dimensions broadcast numpy-style.
 */
export interface MatMulGeometry {
  M: number;
  N: number;
  K: number;
  outShape: number[]; // [...broadcast batch, M, N]
  /** for each output batch entry, the batch entry of a and of b it reads */
  aBatch: Int32Array;
  bBatch: Int32Array;
}

function size(shape: number[]): number {
  return shape.reduce((x, y) => x * y, 1);
}

/** numpy broadcasting of two shapes; throws with both shapes when they do not broadcast. */
export function broadcastShapes(a: number[], b: number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`shapes [${a}] and [${b}] do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/**
 * For every entry of the broadcast shape `out`, the flat index of the entry of `shape` that it reads
 * (size-1 and missing leading dimensions repeat).
 */
export function broadcastSourceIndex(shape: number[], out: number[]): Int32Array {
  const total = size(out);
  const index = new Int32Array(total);
  const rank = out.length;
  const padded = Array.from({ length: rank }, (_, i) => shape[shape.length - rank + i] ?? 1);
  const strides = new Array<number>(rank).fill(0); // stride in `shape` for each output axis, 0 where broadcast
  let stride = 1;
  for (let i = rank - 1; i >= 0; i--) {
    strides[i] = padded[i] === 1 ? 0 : stride;
    stride *= padded[i];
  }
  const coord = new Array<number>(rank).fill(0);
  let source = 0;
  for (let flat = 0; flat < total; flat++) {
    index[flat] = source;
    for (let axis = rank - 1; axis >= 0; axis--) {
      coord[axis]++;
      source += strides[axis];
      if (coord[axis] < out[axis]) break;
      source -= strides[axis] * coord[axis];
      coord[axis] = 0;
    }
  }
  return index;
}

export function matMulGeometry(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): MatMulGeometry {
  if (aShape.length < 2 || bShape.length < 2) throw new Error(`matMul needs rank ≥ 2, got [${aShape}] and [${bShape}]`);
  const ra = aShape.length;
  const rb = bShape.length;
  const M = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const K = transposeA ? aShape[ra - 2] : aShape[ra - 1];
  const Kb = transposeB ? bShape[rb - 1] : bShape[rb - 2];
  const N = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  if (K !== Kb) {
    throw new Error(
      `matMul: inner dimensions ${K} and ${Kb} of [${aShape}] and [${bShape}] (transposeA=${transposeA}, transposeB=${transposeB}) differ`,
    );
  }
  const batchA = aShape.slice(0, -2);
  const batchB = bShape.slice(0, -2);
  const batch = broadcastShapes(batchA, batchB);
  return {
    M,
    N,
    K,
    outShape: [...batch, M, N],
    aBatch: broadcastSourceIndex(batchA, batch),
    bBatch: broadcastSourceIndex(batchB, batch),
  };
}
