/**
 * Opens a Hugging Face MoE folder (qwen2_moe, olmoe, mixtral, megrez_moe; one file or sharded; F32, BF16 or F16) as
 * the dense checkpoint the converter and the reference forward read: tensors under the internal Qwen2-MoE names of
 * docs/design.md §2, plus the architecture's routing rule and q/k norm. Shapes of every tensor are checked before
 * any is read; values are read on first use and checked to be finite.
 */
import * as path from 'path';
import { UserError } from '../errors';
import { configProblems, type ModelConfig } from '../model/config';
import { files, type DenseCheckpoint } from '../checkpoint/dense';
import { denseLayer, denseOuter, plainAttention, type DenseTensor } from '../plan/tensor_table';
import type { HfArchitecture } from './architecture';
import { openHfTensors, type HfTensors } from './hf_tensors';

interface Source {
  shape: number[];
  read(): Float32Array;
}

export function readHfCheckpoint(dir: string, hfConfig: Record<string, unknown>, architecture: HfArchitecture): DenseCheckpoint {
  const configPath = path.join(dir, files.config);
  const imported = architecture.readConfig(hfConfig);
  if (imported.problems.length) {
    throw new UserError(`${configPath}: this ${architecture.modelType} model uses ${imported.problems.join('; ')}, which dsmoe cannot reproduce exactly`);
  }
  const config = imported.config;
  const problems = configProblems(config);
  if (problems.length) throw new UserError(`${configPath}: ${problems.join('; ')}`);
  const tensors = openHfTensors(dir);
  const where = tensors.files.length === 1 ? tensors.files[0] : path.join(dir, files.modelIndex);

  const sources = importSources(config, tensors, architecture, imported.qkNorm, imported.qkvBias, where);

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
    modelPath: tensors.files.length === 1 ? path.join(dir, files.model) : path.join(dir, files.modelIndex),
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

/** Where each dense tensor comes from in this architecture's checkpoint; shapes are checked here, values read later. */
function importSources(config: ModelConfig, tensors: HfTensors, arch: HfArchitecture, qkNorm: boolean, qkvBias: boolean, where: string): Map<string, Source> {
  const sources = new Map<string, Source>();
  const add = (tensor: DenseTensor, candidates = [tensor.name]) => sources.set(tensor.name, direct(tensors, candidates, tensor.shape, where));
  const outer = denseOuter(config);
  add(outer.embed);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const layer = denseLayer(config, l, { qkNorm });
    const attn = plainAttention(layer); // imported architectures have plain attention
    for (const tensor of [layer.inputNorm, attn.q, layer.k, layer.v]) add(tensor);
    for (const bias of [attn.qBias, layer.kBias, layer.vBias]) {
      // Mixtral and OLMoE have no q/k/v biases: zero biases are the same computation
      if (qkvBias) add(bias);
      else sources.set(bias.name, zeros(bias.shape));
    }
    if (layer.qNorm && layer.kNorm) for (const tensor of [layer.qNorm, layer.kNorm]) add(tensor);
    for (const tensor of [attn.o, layer.postAttentionNorm]) add(tensor);
    if (layer.dense) {
      // A dense MLP layer (Megrez2's and DeepSeek's first_k_dense_replace): `mlp.{gate,up,down}_proj`, no router.
      const mlp = layer.experts[0];
      for (const tensor of [mlp.gate, mlp.up, mlp.down]) add(tensor);
      continue;
    }
    add(layer.router, arch.router(l));
    // A shared pool's experts (Megrez2) are stored with its first layer only; the later layers name the same tensors.
    if (layer.ownsExperts) {
      layer.experts.forEach((expert, e) => {
        for (const part of ['gate', 'up', 'down'] as const) {
          const candidates = arch.expert(l, e)[part];
          if (candidates.some((n) => tensors.has(n))) add(expert[part], candidates);
          else sources.set(expert[part].name, fusedExpert(tensors, arch.fusedExpertsPrefix(l), e, part, expert[part].shape, where, candidates[0]));
        }
      });
    }
    if (layer.shared) for (const tensor of [layer.shared.gate, layer.shared.up, layer.shared.down, layer.sharedExpertGate]) add(tensor);
  }
  add(outer.finalNorm);
  if (outer.lmHead) add(outer.lmHead);
  return sources;
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
