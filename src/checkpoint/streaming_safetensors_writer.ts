/**
 * Writes a safetensors file tensor by tensor, so a plan of several GB never sits in memory at once
 * (the whole-buffer `writeSafetensors` is for checkpoints that already do).
 *
 * Layout: 8-byte little-endian header length, the JSON header padded with spaces so that the data section starts
 * at a 64-byte-aligned file offset, then the tensors in the order given. safetensors requires the data section to
 * be contiguous (no holes), so alignment padding is itself a tensor: `__pad__.N`, dtype U8, shape [bytes]. Every
 * real tensor therefore begins at a 64-byte-aligned absolute offset, which lets the runtime's memory-mapped SIMD
 * loads use aligned addresses. Readers that look tensors up by name never see the padding.
 *
 * The file is written to `NAME.tmp-<pid>` and renamed on `finish()`, like every other file dsmoe writes.
 */
import * as fs from 'fs';
import { commitTemporary, temporaryName } from '../checkpoint/atomic';

export const TENSOR_ALIGNMENT = 64;
export const PADDING_PREFIX = '__pad__.';

export interface StreamedTensorSpec {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | 'I32' | 'U8';
  shape: number[];
}

const BYTES: Record<StreamedTensorSpec['dtype'], number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1 };

export function tensorByteLength(spec: StreamedTensorSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1) * BYTES[spec.dtype];
}

interface Slot {
  spec: StreamedTensorSpec;
  begin: number; // relative to the data section
  bytes: number;
  paddingBefore: number; // bytes of the `__pad__` tensor written before this one
}

export class StreamingSafetensorsWriter {
  readonly path: string;
  private readonly tmpPath: string;
  private readonly slots: Slot[] = [];
  private fd: number;
  private position: number; // absolute file offset of the next byte
  private dataStart: number;
  private current = -1; // index into slots of the tensor being written
  private writtenOfCurrent = 0;
  private finished = false;

  /** Opens the temporary file and writes the header; tensors must then be written in `specs` order. */
  constructor(path: string, specs: StreamedTensorSpec[], metadata: Record<string, string> = {}) {
    this.path = path;
    this.tmpPath = temporaryName(path);
    const seen = new Set<string>();
    for (const spec of specs) {
      if (seen.has(spec.name)) throw new Error(`safetensors writer: tensor ${spec.name} listed twice`);
      if (spec.name.startsWith(PADDING_PREFIX)) throw new Error(`safetensors writer: the name prefix ${PADDING_PREFIX} is reserved`);
      // empty tensors would make "which tensor does the next byte belong to" ambiguous; plans never have them
      if (tensorByteLength(spec) === 0) throw new Error(`safetensors writer: tensor ${spec.name} is empty`);
      seen.add(spec.name);
    }

    // The data section's start depends on the header's length, which does not depend on the offsets' values
    // beyond their digits; so lay out offsets relative to the data section first, then pad the header so the
    // data section itself starts aligned, and all relative alignment becomes absolute alignment.
    let offset = 0;
    for (const spec of specs) {
      const paddingBefore = (TENSOR_ALIGNMENT - (offset % TENSOR_ALIGNMENT)) % TENSOR_ALIGNMENT;
      offset += paddingBefore;
      const bytes = tensorByteLength(spec);
      this.slots.push({ spec, begin: offset, bytes, paddingBefore });
      offset += bytes;
    }
    const header: Record<string, unknown> = {};
    if (Object.keys(metadata).length) header.__metadata__ = metadata;
    let padIndex = 0;
    for (const slot of this.slots) {
      if (slot.paddingBefore) {
        const begin = slot.begin - slot.paddingBefore;
        header[`${PADDING_PREFIX}${padIndex++}`] = { dtype: 'U8', shape: [slot.paddingBefore], data_offsets: [begin, slot.begin] };
      }
      header[slot.spec.name] = { dtype: slot.spec.dtype, shape: slot.spec.shape, data_offsets: [slot.begin, slot.begin + slot.bytes] };
    }
    let json = Buffer.from(JSON.stringify(header), 'utf8');
    const unpadded = 8 + json.length;
    const padded = Math.ceil(unpadded / TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT;
    json = Buffer.concat([json, Buffer.alloc(padded - unpadded, 0x20)]);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));

    this.fd = fs.openSync(this.tmpPath, 'w');
    this.position = 0;
    this.writeAll(prefix);
    this.writeAll(json);
    this.dataStart = this.position;
  }

  /** Appends bytes of the next tensor(s); a chunk may end a tensor mid-way and the next chunk continues it. */
  write(chunk: Buffer | Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.current < 0 || this.writtenOfCurrent === this.slots[this.current].bytes) this.startNextTensor();
      const slot = this.slots[this.current];
      const take = Math.min(chunk.length - offset, slot.bytes - this.writtenOfCurrent);
      this.writeAll(chunk.subarray(offset, offset + take));
      this.writtenOfCurrent += take;
      offset += take;
    }
  }

  /** The spec of the tensor the next byte belongs to (null when all are complete); handy for generators. */
  nextTensor(): StreamedTensorSpec | null {
    let index = this.current;
    if (index < 0 || this.writtenOfCurrent === this.slots[index].bytes) index++;
    return index < this.slots.length ? this.slots[index].spec : null;
  }

  /** Checks that every tensor was written completely, flushes, and renames into place. */
  finish(): void {
    const last = this.slots[this.slots.length - 1];
    const complete = this.slots.length === 0 || (this.current === this.slots.length - 1 && this.writtenOfCurrent === last.bytes);
    if (!complete) {
      const currentDone = this.current < 0 || this.writtenOfCurrent === this.slots[this.current].bytes;
      const slot = this.slots[currentDone ? this.current + 1 : this.current];
      const written = currentDone ? 0 : this.writtenOfCurrent;
      this.abort();
      throw new Error(`safetensors writer: ${this.path} incomplete at tensor ${slot.spec.name} (${written} of ${slot.bytes} bytes)`);
    }
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.finished = true;
    commitTemporary(this.tmpPath, this.path);
  }

  /** Closes and removes the temporary file (after an error). */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
    fs.rmSync(this.tmpPath, { force: true });
  }

  /** Absolute file offset where tensor `name`'s data begins (for tests of the alignment). */
  absoluteBegin(name: string): number {
    const slot = this.slots.find((s) => s.spec.name === name);
    if (!slot) throw new Error(`safetensors writer: no tensor ${name}`);
    return this.dataStart + slot.begin;
  }

  private startNextTensor(): void {
    if (this.current >= 0 && this.writtenOfCurrent !== this.slots[this.current].bytes) {
      throw new Error(`safetensors writer: tensor ${this.slots[this.current].spec.name} is not complete`);
    }
    this.current++;
    if (this.current >= this.slots.length) {
      this.abort();
      throw new Error(`safetensors writer: more data than the ${this.slots.length} tensors declared for ${this.path}`);
    }
    const slot = this.slots[this.current];
    if (slot.paddingBefore) this.writeAll(Buffer.alloc(slot.paddingBefore));
    this.writtenOfCurrent = 0;
  }

  private writeAll(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      done += fs.writeSync(this.fd, bytes, done, bytes.length - done, this.position + done);
    }
    this.position += bytes.length;
  }
}
