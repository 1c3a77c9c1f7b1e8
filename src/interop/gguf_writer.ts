/**
 * A GGUF (version 3) file writer, after ggml's `docs/gguf.md`. Little-endian throughout:
 *
 * ```
 * "GGUF" · u32 version = 3 · u64 tensor_count · u64 metadata_kv_count
 * metadata_kv_count × { string key · u32 value_type · value }          string = u64 byte length · UTF-8 bytes
 * tensor_count × { string name · u32 n_dims · u64 ne[n_dims] · u32 ggml_type · u64 offset }
 * zero padding to `alignment` · tensor data (each tensor at its offset, relative to the data start, a multiple
 * of `alignment`; zero padding between tensors and after the last)
 * ```
 *
 * ne[0] is a tensor's fastest-varying dimension: a row-major [rows, cols] matrix is ne = [cols, rows].
 * Tensors are written one at a time from a callback, so a model of several GB never sits in memory; the file goes
 * to `NAME.tmp-<pid>`, is fsynced and renamed (src/checkpoint/atomic.ts).
 */
import * as fs from 'fs';
import { writeAtomicWith } from '../checkpoint/atomic';
import { GGML_TYPE_ID, ggmlByteLength, type GgmlType } from './ggml_types';

export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types (`enum gguf_type`). */
const VALUE_TYPE = { uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9 } as const;

export type GgufValue =
  | { type: 'uint32'; value: number }
  | { type: 'int32'; value: number }
  | { type: 'float32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'string[]'; value: string[] }
  | { type: 'int32[]'; value: ArrayLike<number> };

export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'uint32', value }),
  i32: (value: number): GgufValue => ({ type: 'int32', value }),
  f32: (value: number): GgufValue => ({ type: 'float32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (value: string[]): GgufValue => ({ type: 'string[]', value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: 'int32[]', value }),
};

export interface GgufTensorSpec {
  name: string;
  /** ne: fastest dimension first. */
  dims: number[];
  type: GgmlType;
}

export interface GgufLayout {
  /** Absolute file offset of the data section. */
  dataStart: number;
  /** Offsets of each tensor relative to dataStart, and byte lengths. */
  tensors: { offset: number; bytes: number }[];
  fileSize: number;
}

/** Grows as values are appended; `bytes()` is what was written. */
class ByteSink {
  private buffer = Buffer.alloc(1 << 16);
  private length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + n));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u32(v: number): void {
    const at = this.reserve(4); // before reading this.buffer: reserve may replace it
    this.buffer.writeUInt32LE(v, at);
  }

  i32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeInt32LE(v, at);
  }

  u64(v: number): void {
    const at = this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(v), at);
  }

  f32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeFloatLE(v, at);
  }

  u8(v: number): void {
    const at = this.reserve(1);
    this.buffer.writeUInt8(v, at);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    const at = this.reserve(bytes.length);
    bytes.copy(this.buffer, at);
  }

  padTo(alignment: number): void {
    this.reserve((alignment - (this.length % alignment)) % alignment); // Buffer.alloc zero-fills
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeValue(sink: ByteSink, key: string, value: GgufValue): void {
  const checkInteger = (v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`gguf ${key}: ${v} is not a ${value.type} value`);
  };
  switch (value.type) {
    case 'uint32':
      checkInteger(value.value, 0, 0xffffffff);
      sink.u32(VALUE_TYPE.uint32);
      sink.u32(value.value);
      return;
    case 'int32':
      checkInteger(value.value, -0x80000000, 0x7fffffff);
      sink.u32(VALUE_TYPE.int32);
      sink.i32(value.value);
      return;
    case 'float32':
      if (!Number.isFinite(value.value)) throw new Error(`gguf ${key}: ${value.value} is not a finite float32`);
      sink.u32(VALUE_TYPE.float32);
      sink.f32(value.value);
      return;
    case 'bool':
      sink.u32(VALUE_TYPE.bool);
      sink.u8(value.value ? 1 : 0);
      return;
    case 'string':
      sink.u32(VALUE_TYPE.string);
      sink.string(value.value);
      return;
    case 'string[]':
      sink.u32(VALUE_TYPE.array);
      sink.u32(VALUE_TYPE.string);
      sink.u64(value.value.length);
      for (const s of value.value) sink.string(s);
      return;
    case 'int32[]':
      sink.u32(VALUE_TYPE.array);
      sink.u32(VALUE_TYPE.int32);
      sink.u64(value.value.length);
      for (let i = 0; i < value.value.length; i++) {
        checkInteger(value.value[i], -0x80000000, 0x7fffffff);
        sink.i32(value.value[i]);
      }
      return;
  }
}

function elementCount(spec: GgufTensorSpec): number {
  if (spec.dims.length < 1 || spec.dims.length > 4 || spec.dims.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`gguf tensor ${spec.name}: dims ${JSON.stringify(spec.dims)} must be 1 to 4 positive integers`);
  }
  return spec.dims.reduce((a, b) => a * b, 1);
}

/** The header bytes (up to and including the padding before the data) and where each tensor goes. */
export function ggufHeader(metadata: [string, GgufValue][], tensors: GgufTensorSpec[], alignment = GGUF_DEFAULT_ALIGNMENT): { header: Buffer; layout: GgufLayout } {
  const keys = new Set<string>();
  for (const [key] of metadata) {
    if (keys.has(key)) throw new Error(`gguf: metadata key ${key} given twice`);
    keys.add(key);
  }
  const names = new Set<string>();
  const sink = new ByteSink();
  sink.u8(0x47); // "GGUF"
  sink.u8(0x47);
  sink.u8(0x55);
  sink.u8(0x46);
  sink.u32(GGUF_VERSION);
  sink.u64(tensors.length);
  sink.u64(metadata.length);
  for (const [key, value] of metadata) {
    sink.string(key);
    writeValue(sink, key, value);
  }
  const placed: { offset: number; bytes: number }[] = [];
  let offset = 0;
  for (const spec of tensors) {
    if (names.has(spec.name)) throw new Error(`gguf: tensor ${spec.name} listed twice`);
    names.add(spec.name);
    // ggml_nbytes of a quantized tensor needs ne[0] in whole blocks (rows never share a block)
    const bytes = ggmlByteLength(spec.type, elementCount(spec));
    if (spec.type === 'Q8_0' || spec.type === 'Q4_0') {
      if (spec.dims[0] % 32 !== 0) throw new Error(`gguf tensor ${spec.name}: ne[0] = ${spec.dims[0]} is not a multiple of 32, the ${spec.type} block`);
    }
    sink.string(spec.name);
    sink.u32(spec.dims.length);
    for (const n of spec.dims) sink.u64(n);
    sink.u32(GGML_TYPE_ID[spec.type]);
    sink.u64(offset);
    placed.push({ offset, bytes });
    offset += bytes + ((alignment - (bytes % alignment)) % alignment);
  }
  sink.padTo(alignment);
  const header = sink.bytes();
  return { header, layout: { dataStart: header.length, tensors: placed, fileSize: header.length + offset } };
}

/**
 * Writes a GGUF file: `data(i)` gives tensor i's bytes (already in its ggml type), called in order, once each.
 * `general.alignment` in `metadata`, when present, must equal `alignment`.
 */
export function writeGguf(
  file: string,
  metadata: [string, GgufValue][],
  tensors: GgufTensorSpec[],
  data: (index: number, spec: GgufTensorSpec) => Uint8Array,
  alignment = GGUF_DEFAULT_ALIGNMENT,
): GgufLayout {
  const declared = metadata.find(([key]) => key === 'general.alignment');
  if (declared && declared[1].value !== alignment) throw new Error(`gguf: general.alignment ${declared[1].value} differs from the alignment used, ${alignment}`);
  const { header, layout } = ggufHeader(metadata, tensors, alignment);
  writeAtomicWith(file, (fd) => {
    let position = 0;
    const put = (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
      position += bytes.byteLength;
    };
    put(header);
    tensors.forEach((spec, i) => {
      const bytes = data(i, spec);
      const expected = layout.tensors[i].bytes;
      if (bytes.byteLength !== expected) throw new Error(`gguf tensor ${spec.name}: ${spec.type} ${JSON.stringify(spec.dims)} needs ${expected} bytes, got ${bytes.byteLength}`);
      put(bytes);
      const padding = layout.dataStart + (i + 1 < tensors.length ? layout.tensors[i + 1].offset : layout.fileSize - layout.dataStart) - position;
      if (padding > 0) put(Buffer.alloc(padding));
    });
  });
  return layout;
}
