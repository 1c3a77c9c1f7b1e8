/**
 * A strict reader and an atomic writer for the safetensors format
 * (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { string: string } }`, then raw
 * little-endian tensor data; offsets are relative to the end of the header.
 *
 * We write our own because the npm package `safetensors` (0.0.1) is a read-only stub that crashes on
 * `__metadata__` and on pooled Buffers, and validates nothing. Every header is checked in full before any
 * tensor is used, and only the header is read to do so: tensors are read one at a time, on demand.
 */
import * as fs from 'fs';
import * as os from 'os';
import { writeAtomicWith } from './atomic';

export type DType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8';

/** Bytes per element of each dtype we accept. */
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1 };

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number; // absolute file offset of the first byte
  end: number; // absolute file offset one past the last byte
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  dataStart: number; // absolute offset of the data section (8 + header length)
  fileSize: number;
}

export interface SafetensorsFile {
  header: SafetensorsHeader;
  /** The tensor as float32, widened from F16/BF16 and converted from the integer dtypes. */
  get(name: string): Float32Array;
  /** The tensor's bytes exactly as stored. */
  raw(name: string): Buffer;
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /**
   * F32: Float32Array. F16/BF16: Float32Array (converted, round to nearest even) or Uint16Array of raw bits.
   * I32: Int32Array. Any dtype: a Buffer/Uint8Array of the raw little-endian bytes.
   */
  data: Float32Array | Uint16Array | Int32Array | Uint8Array;
}

/** Headers larger than this are refused: real ones are kilobytes to a few megabytes. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

if (os.endianness() !== 'LE') {
  // Tensor bytes are copied straight into typed arrays, which use the host's byte order.
  throw new Error('safetensors: this module needs a little-endian host');
}

// --- float conversions --------------------------------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** bfloat16 bits of one float32 (bits as uint32), round to nearest even; NaN stays a quiet NaN with its sign. */
function bf16FromF32Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  const roundingBias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + roundingBias) >>> 16) & 0xffff;
}

/** IEEE half bits of one float32 (bits as uint32), round to nearest even, overflow to ±inf, NaN to quiet NaN. */
function f16FromF32Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Half subnormal: value = m · 2^-24, m = (1.mantissa · 2^23) >> (14 − halfExponent), rounded.
    const shift = 14 - halfExponent;
    if (shift > 24) return sign; // below half the smallest subnormal: rounds to zero
    const full = mantissa | 0x800000;
    const kept = full >>> shift;
    const remainder = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    const rounded = remainder > half || (remainder === half && (kept & 1) === 1) ? kept + 1 : kept;
    return sign | rounded; // a carry into bit 10 is exactly the smallest normal
  }
  const kept = mantissa >>> 13;
  const remainder = mantissa & 0x1fff;
  let result = sign | (halfExponent << 10) | kept;
  if (remainder > 0x1000 || (remainder === 0x1000 && (kept & 1) === 1)) result += 1; // a carry may reach inf: correct
  return result;
}

let f16Table: Float32Array | undefined;

/** All 65536 half values as float32, built on first use (conversion is then one lookup per element). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0x1f) {
      bits[h] = sign | 0x7f800000 | (mantissa << 13); // inf, or NaN keeping its payload
    } else if (exponent === 0) {
      table[h] = (sign ? -1 : 1) * mantissa * 2 ** -24; // zero or subnormal: exact in float32
    } else {
      bits[h] = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
    }
  }
  f16Table = table;
  return table;
}

export function f32ToBf16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = bf16FromF32Bits(bits[i]);
  return out;
}

export function bf16ToF32(halves: Uint16Array): Float32Array {
  const out = new Float32Array(halves.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
  return out;
}

export function f32ToF16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16FromF32Bits(bits[i]);
  return out;
}

export function f16ToF32(halves: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
  return out;
}

/** Scalar versions, for tests and one-off values. */
export function roundToBf16(value: number): number {
  f32Scratch[0] = value;
  u32Scratch[0] = bf16FromF32Bits(u32Scratch[0]) << 16;
  return f32Scratch[0];
}

export function roundToF16(value: number): number {
  f32Scratch[0] = value;
  return halfTable()[f16FromF32Bits(u32Scratch[0])];
}

/** The f16 bits of one float32 value (round to nearest even), and the float32 value of f16 bits. */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  return f16FromF32Bits(u32Scratch[0]);
}

export function f16BitsToF32(bits: number): number {
  return halfTable()[bits];
}

// --- reading ------------------------------------------------------------------------------------------------------

function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? text.slice(0, 77) + '...' : text;
}

/** Reads exactly `length` bytes at `position`, or throws naming the file. */
function readExactly(fd: number, file: string, position: number, length: number, into?: Uint8Array): Uint8Array {
  const target = into ?? Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, target, done, length - done, position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done} (file changed while reading?)`);
    done += n;
  }
  return target;
}

function parseHeader(file: string, headerBytes: Uint8Array, dataStart: number, fileSize: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new Error(`${file}: safetensors header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: safetensors header is not valid JSON (${(error as Error).message}): ${show(text.slice(0, 60))}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${file}: safetensors header must be a JSON object, got ${Array.isArray(json) ? 'an array' : show(json)}`);
  }
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    const where = `${file}: tensor ${show(name)}`;
    if (name === '__metadata__') {
      metadata = parseMetadata(file, entry);
      continue;
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new Error(`${where}: expected an object {dtype, shape, data_offsets}, got ${show(entry)}`);
    }
    const { dtype, shape, data_offsets: offsets, ...rest } = entry as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length) throw new Error(`${where}: unknown field ${show(extra[0])} (allowed: dtype, shape, data_offsets)`);
    if (!isDType(dtype)) {
      throw new Error(`${where}: dtype ${show(dtype)} is not one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
    }
    if (!Array.isArray(shape) || !shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
      throw new Error(`${where}: shape ${show(shape)} must be an array of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((n) => Number.isSafeInteger(n) && n >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new Error(`${where}: data_offsets ${show(offsets)} must be [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      throw new Error(`${where}: data_offsets ${show(offsets)} run past the data section (${dataSize} bytes)`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expectedBytes = elements * DTYPE_BYTES[dtype];
    if (expectedBytes !== end - begin) {
      throw new Error(
        `${where}: shape ${show(shape)} of ${dtype} needs ${expectedBytes} bytes but data_offsets ${show(offsets)} hold ${end - begin}`,
      );
    }
    tensors.set(name, { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end });
  }
  checkNoOverlap(file, tensors);
  return { tensors, metadata, dataStart, fileSize };
}

function parseMetadata(file: string, entry: unknown): Record<string, string> {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    throw new Error(`${file}: __metadata__ must be an object of strings, got ${show(entry)}`);
  }
  for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      throw new Error(`${file}: __metadata__.${key} must be a string, got ${show(value)}`);
    }
  }
  return { ...(entry as Record<string, string>) };
}

function checkNoOverlap(file: string, tensors: Map<string, TensorInfo>): void {
  // Empty tensors occupy no bytes and cannot overlap anything.
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    const current = sorted[i];
    if (current.begin < previous.end) {
      throw new Error(
        `${file}: tensors ${show(previous.name)} and ${show(current.name)} overlap ` +
          `(bytes ${previous.begin}-${previous.end} and ${current.begin}-${current.end})`,
      );
    }
  }
}

function readHeaderFromFd(fd: number, file: string): SafetensorsHeader {
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) {
    throw new Error(`${file}: ${fileSize} bytes is too short for a safetensors file (needs an 8-byte header length)`);
  }
  const lengthBytes = Buffer.from(readExactly(fd, file, 0, 8));
  const headerLength = lengthBytes.readBigUInt64LE(0);
  if (headerLength < 2n) {
    throw new Error(`${file}: safetensors header length ${headerLength} is too small (at least 2 bytes: "{}")`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${file}: safetensors header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const length = Number(headerLength);
  if (8 + length > fileSize) {
    throw new Error(`${file}: safetensors header length ${length} runs past the end of the ${fileSize}-byte file`);
  }
  const headerBytes = readExactly(fd, file, 8, length);
  return parseHeader(file, headerBytes, 8 + length, fileSize);
}

function openForReading(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (error) {
    throw new Error(`${file}: cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** Reads and validates the header only. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = openForReading(file);
  try {
    return readHeaderFromFd(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

/** Opens a file for tensor access; each `get`/`raw` reads that tensor's bytes from disk. */
export function readSafetensors(file: string): SafetensorsFile {
  const header = readSafetensorsHeader(file);
  const info = (name: string): TensorInfo => {
    const tensor = header.tensors.get(name);
    if (!tensor) throw new Error(`${file}: no tensor named ${show(name)}`);
    return tensor;
  };
  const readInto = (tensor: TensorInfo, target: Uint8Array): void => {
    const fd = openForReading(file);
    try {
      readExactly(fd, file, tensor.begin, tensor.end - tensor.begin, target);
    } finally {
      fs.closeSync(fd);
    }
  };
  const raw = (name: string): Buffer => {
    const tensor = info(name);
    const bytes = Buffer.alloc(tensor.end - tensor.begin); // unpooled: byteOffset 0, aligned for typed views
    readInto(tensor, bytes);
    return bytes;
  };
  const get = (name: string): Float32Array => {
    const tensor = info(name);
    const count = (tensor.end - tensor.begin) / DTYPE_BYTES[tensor.dtype];
    if (tensor.dtype === 'F32') {
      const out = new Float32Array(count);
      readInto(tensor, new Uint8Array(out.buffer));
      return out;
    }
    const bytes = raw(name);
    switch (tensor.dtype) {
      case 'F16':
        return f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count));
      case 'BF16':
        return bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count));
      case 'I32':
        return Float32Array.from(new Int32Array(bytes.buffer, bytes.byteOffset, count));
      case 'I64':
        return Float32Array.from(new BigInt64Array(bytes.buffer, bytes.byteOffset, count), (v) => Number(v));
      case 'U8':
        return Float32Array.from(bytes);
    }
  };
  return { header, get, raw };
}

// --- writing ------------------------------------------------------------------------------------------------------

/** The stored bytes of one tensor, converting float32 input to F16/BF16 where the dtype asks for it. */
function tensorBytes(file: string, tensor: TensorToWrite): Uint8Array {
  const where = `${file}: tensor ${show(tensor.name)}`;
  if (!isDType(tensor.dtype)) throw new Error(`${where}: cannot write dtype ${show(tensor.dtype)}`);
  if (!Array.isArray(tensor.shape) || !tensor.shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new Error(`${where}: shape ${show(tensor.shape)} must be an array of non-negative integers`);
  }
  const elements = tensor.shape.reduce((a, b) => a * b, 1);
  const data = tensor.data;
  let bytes: Uint8Array;
  if (data instanceof Float32Array) {
    if (tensor.dtype === 'F32') bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else if (tensor.dtype === 'F16') bytes = new Uint8Array(f32ToF16(data).buffer);
    else if (tensor.dtype === 'BF16') bytes = new Uint8Array(f32ToBf16(data).buffer);
    else throw new Error(`${where}: Float32Array data can be written as F32, F16 or BF16, not ${tensor.dtype}`);
  } else if (data instanceof Uint16Array) {
    if (tensor.dtype !== 'F16' && tensor.dtype !== 'BF16') {
      throw new Error(`${where}: Uint16Array data holds F16 or BF16 bits, not ${tensor.dtype}`);
    }
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } else if (data instanceof Int32Array) {
    if (tensor.dtype !== 'I32') throw new Error(`${where}: Int32Array data is written as I32, not ${tensor.dtype}`);
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } else if (data instanceof Uint8Array) {
    bytes = data; // raw bytes (a Buffer is a Uint8Array)
  } else {
    throw new Error(`${where}: data must be a Float32Array, Uint16Array, Int32Array or Buffer`);
  }
  const expected = elements * DTYPE_BYTES[tensor.dtype];
  if (bytes.byteLength !== expected) {
    throw new Error(`${where}: shape ${show(tensor.shape)} of ${tensor.dtype} needs ${expected} bytes, data has ${bytes.byteLength}`);
  }
  return bytes;
}

/**
 * Writes tensors in the given order, contiguously, after a header padded with spaces to a multiple of 8 bytes
 * (as the reference implementation does, so that data is aligned). Writes `file.tmp-<pid>` and renames it.
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new Error(`${file}: __metadata__.${key} must be a string, got ${show(value)}`);
    }
    header.__metadata__ = metadata;
  }
  const payloads: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of tensors) {
    if (tensor.name === '__metadata__' || Object.prototype.hasOwnProperty.call(header, tensor.name)) {
      throw new Error(`${file}: tensor name ${show(tensor.name)} is reserved or used twice`);
    }
    const bytes = tensorBytes(file, tensor);
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.byteLength] };
    payloads.push(bytes);
    offset += bytes.byteLength;
  }
  let headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const padding = (8 - (headerBytes.length % 8)) % 8;
  if (padding) headerBytes = Buffer.concat([headerBytes, Buffer.alloc(padding, 0x20)]);
  const lengthBytes = Buffer.alloc(8);
  lengthBytes.writeBigUInt64LE(BigInt(headerBytes.length));

  writeAtomicWith(file, (fd) => {
    writeAll(fd, lengthBytes);
    writeAll(fd, headerBytes);
    for (const bytes of payloads) writeAll(fd, bytes);
  });
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
}
