/**
 * Opens a Hugging Face MoE folder (qwen2_moe, olmoe, mixtral; one file or sharded; F32, BF16 or F16) as the dense
 * checkpoint the converter and the reference forward read: tensors under the internal Qwen2-MoE names of
 * docs/design.md §2, plus the architecture's routing rule and q/k norm. Shapes of every tensor are checked before
 * any is read; values are read on first use and checked to be finite.
 */
import * as path from 'path';
import { UserError } from '../errors';
import { names } from '../checkpoint/names';
import { configProblems, headDim } from '../model/config';
import { qkNormNames } from '../model/reference';
import type { DenseCheckpoint } from '../convert/read_dense';
import { requiredDenseTensors } from '../convert/read_dense';
import type { HfArchitecture } from './architecture';
import { INDEX_FILE, openHfTensors, SINGLE_FILE, type HfTensors } from './hf_tensors';

interface Source {
  shape: number[];
  read(): Float32Array;
}

export function readHfCheckpoint(dir: string, hfConfig: Record<string, unknown>, architecture: HfArchitecture): DenseCheckpoint {
  const configPath = path.join(dir, 'config.json');
  const imported = architecture.readConfig(hfConfig);
  if (imported.problems.length) {
    throw new UserError(`${configPath}: this ${architecture.modelType} model uses ${imported.problems.join('; ')}, which dsmoe cannot reproduce exactly`);
  }
  const config = imported.config;
  const problems = configProblems(config);
  if (problems.length) throw new UserError(`${configPath}: ${problems.join('; ')}`);
  const tensors = openHfTensors(dir);
  const where = tensors.files.length === 1 ? tensors.files[0] : path.join(dir, INDEX_FILE);

  const sources = new Map<string, Source>();
  for (const [name, shape] of requiredDenseTensors(config)) sources.set(name, sourceOf(name, shape, tensors, architecture, imported.qkvBias, where));
  if (imported.qkNorm) {
    const hd = headDim(config);
    for (let l = 0; l < config.num_hidden_layers; l++) {
      sources.set(qkNormNames.q(l), direct(tensors, [qkNormNames.q(l)], [config.num_attention_heads * hd], where));
      sources.set(qkNormNames.k(l), direct(tensors, [qkNormNames.k(l)], [config.num_key_value_heads * hd], where));
    }
  }

  const cache = new Map<string, Float32Array>();
  const get = (name: string): Float32Array => {
    let values = cache.get(name);
    if (!values) {
      const source = sources.get(name);
      if (!source) throw new UserError(`${where}: the ${architecture.modelType} import has no tensor ${name}`);
      values = source.read();
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new UserError(`${where}: tensor for ${name} holds a non-finite value (${values[bad]}) at element ${bad}`);
      cache.set(name, values);
    }
    return values;
  };
  return {
    dir,
    modelPath: tensors.files.length === 1 ? path.join(dir, SINGLE_FILE) : path.join(dir, INDEX_FILE),
    config,
    hfConfig,
    normTopkProb: imported.routingRule === 'softmax-renormalized',
    modelType: architecture.modelType,
    routingRule: imported.routingRule,
    importNotes: imported.notes,
    qkNorm: imported.qkNorm,
    get,
    sha256: () => tensors.sha256(),
  };
}

/** Where one internal tensor comes from in this architecture's checkpoint. */
function sourceOf(name: string, shape: number[], tensors: HfTensors, arch: HfArchitecture, qkvBias: boolean, where: string): Source {
  const layerMatch = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!layerMatch) return direct(tensors, [name], shape, where);
  const l = Number(layerMatch[1]);
  const rest = layerMatch[2];
  if (/^self_attn\.[qkv]_proj\.bias$/.test(rest)) {
    if (qkvBias) return direct(tensors, [name], shape, where);
    return zeros(shape); // Mixtral and OLMoE have no q/k/v biases: zero biases are the same computation
  }
  if (rest === 'mlp.gate.weight') return direct(tensors, arch.router(l), shape, where);
  const expert = /^mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(rest);
  if (expert) {
    const e = Number(expert[1]);
    const part = expert[2] as 'gate' | 'up' | 'down';
    const candidates = arch.expert(l, e)[part];
    if (candidates.some((n) => tensors.has(n))) return direct(tensors, candidates, shape, where);
    return fusedExpert(tensors, arch.fusedExpertsPrefix(l), e, part, shape, where, candidates[0]);
  }
  return direct(tensors, [name], shape, where);
}

function describe(candidates: string[]): string {
  return candidates.length === 1 ? candidates[0] : `${candidates[0]} (or ${candidates.slice(1).join(', ')})`;
}

function checkedInfo(tensors: HfTensors, name: string, where: string) {
  const info = tensors.info(name);
  if (info.dtype !== 'F32' && info.dtype !== 'BF16' && info.dtype !== 'F16') {
    throw new UserError(`${where}: tensor ${name} has dtype ${info.dtype}, expected F32, BF16 or F16`);
  }
  return info;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

function direct(tensors: HfTensors, candidates: string[], shape: number[], where: string): Source {
  const name = candidates.find((n) => tensors.has(n));
  if (!name) throw new UserError(`${where}: missing tensor ${describe(candidates)}`);
  const info = checkedInfo(tensors, name, where);
  if (!sameShape(info.shape, shape)) {
    throw new UserError(`${where}: tensor ${name} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] for the shape in config.json`);
  }
  return { shape, read: () => tensors.get(name) };
}

function zeros(shape: number[]): Source {
  return { shape, read: () => new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

/** One expert's matrix cut out of transformers 5's fused [E, 2I, d] gate_up or [E, d, I] down tensor. */
function fusedExpert(tensors: HfTensors, prefixes: string[], e: number, part: 'gate' | 'up' | 'down', shape: number[], where: string, legacy: string): Source {
  const suffix = part === 'down' ? 'down_proj' : 'gate_up_proj';
  const name = prefixes.map((p) => `${p}.${suffix}`).find((n) => tensors.has(n));
  if (!name) throw new UserError(`${where}: missing tensor ${legacy} (and no fused ${prefixes[0]}.${suffix})`);
  const info = checkedInfo(tensors, name, where);
  const [rows, cols] = shape; // gate/up: [I, d]; down: [d, I]
  const fusedRows = part === 'down' ? rows : 2 * rows;
  if (info.shape.length !== 3 || info.shape[0] <= e || info.shape[1] !== fusedRows || info.shape[2] !== cols) {
    throw new UserError(`${where}: tensor ${name} has shape [${info.shape.join(', ')}], expected [E, ${fusedRows}, ${cols}] for the shape in config.json`);
  }
  const offset = (e * fusedRows + (part === 'up' ? rows : 0)) * cols;
  return { shape, read: () => fusedValues(tensors, name).slice(offset, offset + rows * cols) };
}

// A fused tensor holds every expert of a layer: read it once, not once per expert and part.
const fusedCache = new WeakMap<HfTensors, { name: string; values: Float32Array }>();

function fusedValues(tensors: HfTensors, name: string): Float32Array {
  const cached = fusedCache.get(tensors);
  if (cached && cached.name === name) return cached.values;
  const values = tensors.get(name);
  fusedCache.set(tensors, { name, values });
  return values;
}
