/**
 * Opens a dense checkpoint folder (docs/design.md §2) for conversion and validates it completely first: config.json
 * parses and describes a usable Qwen2-MoE model, model.safetensors parses, every tensor the model needs is there
 * with its exact shape, and every value is finite. Errors are UserErrors naming the file and what was expected.
 */
import { sha256Files } from '../checkpoint/files';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { denseNames, denseTensors, type DenseTensor } from '../plan/tensor_table';
import { readSafetensors, readSafetensorsHeader, type SafetensorsFile } from '../checkpoint/safetensors';
import { configProblems, fromHfConfig, type ModelConfig } from '../model/config';
import type { ReferenceWeights } from '../model/reference';
import type { ImportedModelType, RoutingRuleName } from '../interop/architecture';
import { architectureFor } from '../interop/architectures';
import { hasHfWeights } from '../interop/hf_tensors';
import { readHfCheckpoint } from '../interop/read_hf_checkpoint';

export interface DenseCheckpoint extends ReferenceWeights {
  dir: string;
  modelPath: string;
  hfConfig: Record<string, unknown>;
  /** True when config.json asks for renormalised top-k (`norm_topk_prob: true`, Mixtral-style imports). */
  normTopkProb: boolean;
  /** sha256 (hex) of model.safetensors (sharded imports: of the index, then every shard). */
  sha256(): string;
  /** Imported Hugging Face folders (src/interop): the source architecture and its routing rule. */
  modelType?: ImportedModelType;
  routingRule?: RoutingRuleName;
  importNotes?: string[];
}

/** Every tensor the forward reads, with its shape: the contract of §2 for this config (the zero gate is optional). */
export function requiredDenseTensors(config: ModelConfig): DenseTensor[] {
  return denseTensors(config).filter((tensor) => !tensor.zero);
}

export function readDenseCheckpoint(dir: string): DenseCheckpoint {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new UserError(`${dir}: not a directory (expected a dense checkpoint folder written by dsmoe train)`);
  }
  const configPath = path.join(dir, 'config.json');
  const modelPath = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(configPath)) throw new UserError(`${configPath}: missing (a dense checkpoint folder holds config.json and model.safetensors)`);
  if (!hasHfWeights(dir)) throw new UserError(`${modelPath}: missing (a dense checkpoint folder holds config.json and model.safetensors)`);
  let hfConfig: Record<string, unknown>;
  try {
    hfConfig = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (error) {
    throw new UserError(`${configPath}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof hfConfig !== 'object' || hfConfig === null || Array.isArray(hfConfig)) {
    throw new UserError(`${configPath}: expected a JSON object`);
  }
  // Hugging Face folders that are not dsmoe's own single-file Qwen2-MoE layout go through an architecture adapter.
  const architecture = architectureFor(hfConfig.model_type);
  if (architecture && isForeignLayout(dir, hfConfig)) return readHfCheckpoint(dir, hfConfig, architecture);
  if (hfConfig.model_type !== 'qwen2_moe') {
    throw new UserError(`${configPath}: model_type must be "qwen2_moe", got ${JSON.stringify(hfConfig.model_type)} (imports also read "olmoe" and "mixtral")`);
  }
  const config = fromHfConfig(hfConfig);
  const problems = configProblems(config);
  if (problems.length) throw new UserError(`${configPath}: ${problems.join('; ')}`);

  let file: SafetensorsFile;
  try {
    file = readSafetensors(modelPath);
  } catch (error) {
    throw new UserError(`${modelPath}: not a valid safetensors file (${(error as Error).message})`);
  }
  const missing: string[] = [];
  for (const { name, shape } of requiredDenseTensors(config)) {
    const info = file.header.tensors.get(name);
    if (!info) {
      missing.push(name);
      continue;
    }
    if (info.shape.length !== shape.length || info.shape.some((n, i) => n !== shape[i])) {
      throw new UserError(
        `${modelPath}: tensor ${name} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] for the shape in config.json`,
      );
    }
    if (info.dtype !== 'F32' && info.dtype !== 'BF16' && info.dtype !== 'F16') {
      throw new UserError(`${modelPath}: tensor ${name} has dtype ${info.dtype}, expected a float dtype (F32, BF16 or F16)`);
    }
  }
  if (missing.length) {
    const shown = missing.slice(0, 3).join(', ') + (missing.length > 3 ? ` and ${missing.length - 3} more` : '');
    throw new UserError(`${modelPath}: missing ${missing.length} tensor(s) the model needs: ${shown}`);
  }

  // Tensors are read once, checked for non-finite values, and kept: calibration runs many forwards over them.
  const cache = new Map<string, Float32Array>();
  const get = (name: string): Float32Array => {
    let values = cache.get(name);
    if (!values) {
      if (!file.header.tensors.has(name)) throw new UserError(`${modelPath}: no tensor ${name}`);
      values = file.get(name);
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new UserError(`${modelPath}: tensor ${name} holds a non-finite value (${values[bad]}) at element ${bad}`);
      cache.set(name, values);
    }
    return values;
  };
  for (const { name } of requiredDenseTensors(config)) get(name);

  let digest: string | undefined;
  return {
    dir,
    modelPath,
    config,
    hfConfig,
    normTopkProb: hfConfig.norm_topk_prob === true,
    get,
    sha256: () => (digest ??= sha256Files([modelPath])),
  };
}

/**
 * dsmoe's own layout is a config.json with a "dsmoe" block and one model.safetensors with per-expert Qwen2-MoE
 * names; anything else (another architecture, a Qwen2-MoE from the Hub, sharded weights, transformers 5's fused
 * experts) is read through src/interop, which also reads transformers 5 config spellings.
 */
function isForeignLayout(dir: string, hfConfig: Record<string, unknown>): boolean {
  if (hfConfig.model_type !== 'qwen2_moe' || hfConfig.dsmoe === undefined) return true;
  const single = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(single)) return true;
  try {
    return !readSafetensorsHeader(single).tensors.has(denseNames.expertGate(0, 0));
  } catch {
    return false; // let the strict path below report what is wrong with the file
  }
}

