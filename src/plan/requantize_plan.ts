/**
 * A plan stored at other class dtypes (docs/design.md §4 `dtypes`): the same graph, routing, calibration and tensor
 * values, with the routed experts and/or the attention projections re-encoded — for the report's rows per bit-width,
 * which score one converted plan at bf16, q8, q4 … without going back to the dense checkpoint.
 *
 * Values are decoded from the plan's storage to f32 and encoded again, so a q4 row quantizes the plan's bf16 values
 * (for an f32 plan, exactly what `dsmoe convert --expert-dtype q4` writes). Tensors whose dtype does not change are
 * copied byte for byte.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeJsonAtomic } from '../checkpoint/atomic';
import { StreamingSafetensorsWriter } from '../checkpoint/streaming_safetensors_writer';
import { planCost } from './cost';
import { decodeTensor, encodeTensor, isQuantized, MATRIX_DTYPES, tensorBytes, tensorDtype } from './dtype';
import type { ModelConfig } from '../model/config';
import type { LoadedPlan, Plan, PlanClassDtypes, PlanCost, PlanDtype } from './plan_format';
import { layerOps, PLAN_TOKENIZER_FILES } from './plan_format';
import { planTensors } from './tensor_table';

/** Values re-encoded per chunk (whole rows; a row of quantized blocks is a multiple of 32 values). */
const CHUNK_VALUES = 1 << 20;

/**
 * The cost figures of a plan whose classes are stored at `classes` instead (src/plan/cost.ts). Expected experts per
 * token are read back from the plan's own cost (its active parameters are linear in them), so threshold plans keep
 * their calibrated counts.
 */
export function costAtClassDtypes(
  plan: { config: ModelConfig; dtype: PlanDtype; cost: PlanCost },
  keptPerLayer: number[], // [L] experts kept per layer
  classes: PlanClassDtypes,
): PlanCost {
  const c = plan.config;
  const L = keptPerLayer.length;
  const withoutExperts = planCost(c, plan.dtype, keptPerLayer, Array(L).fill(0)).active_params_per_token;
  const expertsPerToken = (plan.cost.active_params_per_token - withoutExperts) / (3 * c.hidden_size * c.moe_intermediate_size);
  return { ...plan.cost, ...planCost(c, plan.dtype, keptPerLayer, Array(L).fill(expertsPerToken / L), classes) };
}

/** plan.json at `classes`: `dtypes` written only when a class differs from `dtype` (as buildPlan does), cost recomputed. */
export function planWithClassDtypes(plan: Plan, classes: PlanClassDtypes): Plan {
  const kept = plan.layers.map((layer) => layerOps(layer).experts.kept.length);
  const differs = classes.experts !== plan.dtype || classes.attention !== plan.dtype;
  const { dtypes: _replaced, ...rest } = plan;
  return { ...rest, ...(differs ? { dtypes: { ...classes } } : {}), cost: costAtClassDtypes(plan, kept, classes) };
}

/**
 * Values per millisecond this machine re-encodes at, now: bf16 decoded, then encoded at each quantized dtype, the
 * slowest counted (the affine types search several ranges per block), for sizing the report's rows per bit-width to
 * a time budget.
 */
export function measureRequantizeRate(values = 1 << 18): number {
  const bf16 = encodeTensor(Float32Array.from({ length: values }, (_, i) => Math.sin(i) * 0.02), 'BF16');
  let slowestMs = 1e-3;
  for (const dtype of MATRIX_DTYPES.filter((d) => isQuantized(d))) {
    const start = process.hrtime.bigint();
    encodeTensor(decodeTensor(bf16, 'BF16', values), tensorDtype(dtype));
    slowestMs = Math.max(slowestMs, Number(process.hrtime.bigint() - start) / 1e6);
  }
  return values / slowestMs;
}

/** Writes `loaded` at `classes` into `outDir` (plan.json, weights, tokenizer files); returns the new plan.json. */
export function writePlanWithClassDtypes(loaded: LoadedPlan, outDir: string, classes: PlanClassDtypes, chunkValues = CHUNK_VALUES): Plan {
  const plan = planWithClassDtypes(loaded.plan, classes);
  const sources = new Map(planTensors(loaded.plan).map((t) => [t.name, t]));
  const targets = planTensors(plan);
  fs.mkdirSync(outDir, { recursive: true });
  const writer = new StreamingSafetensorsWriter(path.join(outDir, plan.weights), targets.map(({ name, storage }) => ({ name, ...storage })), {
    format: 'pt',
    producer: 'dsmoe plan at other class dtypes',
  });
  const fd = fs.openSync(loaded.weightsPath, 'r');
  try {
    for (const target of targets) {
      const source = sources.get(target.name);
      const info = loaded.header.tensors.get(target.name);
      if (!source || !info) throw new Error(`${loaded.weightsPath}: no tensor ${target.name}`);
      const rowValues = target.shape[target.shape.length - 1];
      const rows = target.shape.reduce((a, b) => a * b, 1) / rowValues;
      const rowsPerChunk = Math.max(1, Math.floor(chunkValues / rowValues));
      const sourceRowBytes = tensorBytes(source.dtype, [rowValues]);
      for (let row = 0; row < rows; row += rowsPerChunk) {
        const n = Math.min(rowsPerChunk, rows - row);
        const bytes = Buffer.allocUnsafe(n * sourceRowBytes);
        const read = fs.readSync(fd, bytes, 0, bytes.length, info.begin + row * sourceRowBytes);
        if (read !== bytes.length) throw new Error(`${loaded.weightsPath}: short read in ${target.name}`);
        writer.write(source.dtype === target.dtype ? bytes : encodeTensor(decodeTensor(bytes, source.dtype, n * rowValues), target.dtype));
      }
    }
    writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  } finally {
    fs.closeSync(fd);
  }
  const sourceDir = path.dirname(loaded.weightsPath);
  for (const file of PLAN_TOKENIZER_FILES) {
    if (fs.existsSync(path.join(sourceDir, file))) fs.copyFileSync(path.join(sourceDir, file), path.join(outDir, file));
  }
  writeJsonAtomic(path.join(outDir, 'plan.json'), plan);
  return plan;
}
