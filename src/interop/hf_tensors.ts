/**
 * The weights of a Hugging Face model folder, one file (`model.safetensors`) or sharded
 * (`model.safetensors.index.json` + the shards its `weight_map` names), seen as one name → tensor table.
 * Every shard's header is validated up front; tensors are read one at a time, widened to float32.
 */
import { sha256Files } from '../checkpoint/files';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { files as denseFiles } from '../checkpoint/dense';
import { readSafetensors, type SafetensorsFile, type TensorInfo } from '../checkpoint/safetensors';

const SINGLE_FILE = denseFiles.model;
const INDEX_FILE = denseFiles.modelIndex;

export interface HfTensors {
  /** The files read, in the order the index (or the folder) lists them. */
  files: string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** The tensor as float32 (F16/BF16 widened). */
  get(name: string): Float32Array;
  names(): string[];
  /** sha256 of the single file, or of the index file followed by every shard, in order. */
  sha256(): string;
}

export function openHfTensors(dir: string): HfTensors {
  const single = path.join(dir, SINGLE_FILE);
  const indexPath = path.join(dir, INDEX_FILE);
  const fileOf = new Map<string, string>(); // tensor name → shard path
  let files: string[];
  if (fs.existsSync(single)) {
    files = [single];
  } else if (fs.existsSync(indexPath)) {
    files = shardsFromIndex(dir, indexPath, fileOf);
  } else {
    throw new UserError(`${dir}: no ${SINGLE_FILE} and no ${INDEX_FILE} (expected Hugging Face safetensors weights)`);
  }
  const opened = new Map<string, SafetensorsFile>();
  for (const file of files) {
    if (!fs.existsSync(file)) throw new UserError(`${file}: missing (named by ${INDEX_FILE})`);
    try {
      opened.set(file, readSafetensors(file));
    } catch (error) {
      throw new UserError(`${file}: not a valid safetensors file (${(error as Error).message})`);
    }
  }
  if (files.length === 1 && fileOf.size === 0) {
    for (const name of opened.get(files[0])!.header.tensors.keys()) fileOf.set(name, files[0]);
  } else {
    for (const [name, file] of fileOf) {
      if (!opened.get(file)!.header.tensors.has(name)) throw new UserError(`${file}: has no tensor ${name}, which ${INDEX_FILE} places there`);
    }
  }
  const fileFor = (name: string): SafetensorsFile => {
    const file = fileOf.get(name);
    if (!file) throw new UserError(`${dir}: no tensor ${name}`);
    return opened.get(file)!;
  };
  let digest: string | undefined;
  return {
    files: fs.existsSync(single) ? [single] : [indexPath, ...files],
    has: (name) => fileOf.has(name),
    info: (name) => fileFor(name).header.tensors.get(name)!,
    get: (name) => fileFor(name).get(name),
    names: () => [...fileOf.keys()],
    sha256: () => (digest ??= sha256Files(fs.existsSync(single) ? [single] : [indexPath, ...files])),
  };
}

function shardsFromIndex(dir: string, indexPath: string, fileOf: Map<string, string>): string[] {
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch (error) {
    throw new UserError(`${indexPath}: not valid JSON (${(error as Error).message})`);
  }
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new UserError(`${indexPath}: weight_map must be an object of tensor name → shard file`);
  const files: string[] = [];
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    // Shards are plain file names inside the folder: anything else could read outside it.
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) {
      throw new UserError(`${indexPath}: weight_map[${JSON.stringify(name)}] must be a file name inside the folder, got ${JSON.stringify(shard)}`);
    }
    const file = path.join(dir, shard);
    if (!files.includes(file)) files.push(file);
    fileOf.set(name, file);
  }
  if (files.length === 0) throw new UserError(`${indexPath}: weight_map is empty`);
  return files;
}

