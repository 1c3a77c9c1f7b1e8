/**
 * `readPlan`: reads and validates a plan folder — plan.json (validate_plan.ts) and the weights file against every
 * tensor the plan names (shape, dtype, and a file that ends where its last tensor does) — before anything reaches
 * native code. Errors are one-line UserErrors naming the file, the field path and what was expected.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { SafetensorsHeader } from '../checkpoint/safetensors';
import { readSafetensorsHeader } from '../checkpoint/safetensors';
import { UserError } from '../errors';
import type { LoadedPlan, Plan } from './plan_format';
import { layerOps } from './plan_format';
import { validatePlanJson } from './validate_plan';
import { planTensors } from './tensor_table';

export interface ReadPlanOptions {
  /** The caller applies attention q/k norms (the reference forward does; the native runtime does not yet). */
  qkNorm?: boolean;
}

/** Reads and validates a plan folder; throws a UserError naming the file, the field path and what was expected. */
export function readPlan(dir: string, options: ReadPlanOptions = {}): LoadedPlan {
  const planPath = path.join(dir, 'plan.json');
  if (!fs.existsSync(planPath)) throw new UserError(`${planPath}: not found (is ${dir} a sparse plan folder written by dsmoe convert?)`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(planPath, 'utf8'));
  } catch (error) {
    throw new UserError(`${planPath}: not valid JSON (${(error as Error).message})`);
  }
  const problems: string[] = [];
  const plan = validatePlanJson(raw, problems);
  if (problems.length || !plan) throw new UserError(formatProblems('plan.json', planPath, problems));
  if (!options.qkNorm && plan.layers.some((layer) => layerOps(layer).attention.q_norm !== undefined)) {
    // Refused rather than run without the norms: the logits would be silently wrong.
    throw new UserError(
      `${planPath}: this ${plan.source.model_type} plan applies q/k RMSNorm in attention, which the native runtime does not implement (see docs/interop.md)`,
    );
  }

  const weightsPath = path.join(dir, plan.weights);
  if (!fs.existsSync(weightsPath)) throw new UserError(`${weightsPath}: not found (plan.json: weights names it)`);
  let header: SafetensorsHeader;
  try {
    header = readSafetensorsHeader(weightsPath);
  } catch (error) {
    throw new UserError(`${plan.weights}: not a valid safetensors file (${(error as Error).message})`);
  }
  const weightProblems = weightsProblems(plan, header, fs.statSync(weightsPath).size);
  if (weightProblems.length) throw new UserError(formatProblems(plan.weights, weightsPath, weightProblems));
  return { plan, weightsPath, header };
}

function formatProblems(fileLabel: string, filePath: string, problems: string[]): string {
  const shown = problems.slice(0, 8).map((p) => `${fileLabel}: ${p}`);
  const more = problems.length > 8 ? ` (and ${problems.length - 8} more)` : '';
  return `invalid plan (${filePath}): ${shown.join('; ')}${more}`;
}

function weightsProblems(plan: Plan, header: SafetensorsHeader, sizeOnDisk: number): string[] {
  const problems: string[] = [];
  if (header.fileSize !== sizeOnDisk) problems.push(`file size ${sizeOnDisk} bytes differs from the ${header.fileSize} read`);
  let dataEnd = header.dataStart;
  for (const info of header.tensors.values()) dataEnd = Math.max(dataEnd, info.end);
  if (dataEnd !== sizeOnDisk) {
    problems.push(
      dataEnd > sizeOnDisk
        ? `truncated: tensors end at byte ${dataEnd} but the file has ${sizeOnDisk} bytes`
        : `${sizeOnDisk - dataEnd} bytes after the last tensor (expected the file to end at byte ${dataEnd})`,
    );
  }
  for (const want of planTensors(plan)) {
    const info = header.tensors.get(want.name);
    if (!info) {
      problems.push(`tensor ${JSON.stringify(want.name)} (plan.json: ${want.usedAt}) is missing`);
      continue;
    }
    const stored = want.storage;
    if (info.shape.length !== stored.shape.length || info.shape.some((n, i) => n !== stored.shape[i])) {
      const logical = stored.dtype === 'U8' ? ` (${want.dtype} blocks of [${want.shape.join(', ')}] weights)` : '';
      problems.push(`tensor ${JSON.stringify(want.name)}: expected shape [${stored.shape.join(', ')}]${logical}, got [${info.shape.join(', ')}]`);
    }
    if (info.dtype !== stored.dtype) {
      const why = want.dtype === stored.dtype ? '' : ` holding ${want.dtype} blocks`;
      problems.push(`tensor ${JSON.stringify(want.name)}: expected dtype ${stored.dtype}${why} (plan dtype ${plan.dtype}${plan.dtypes ? `, experts ${plan.dtypes.experts}, attention ${plan.dtypes.attention}` : ''}), got ${info.dtype}`);
    }
  }
  return problems;
}
