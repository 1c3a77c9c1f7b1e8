import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import { StreamingSafetensorsWriter, TENSOR_ALIGNMENT } from '../../src/checkpoint/streaming_safetensors_writer';
import { tempDir, removeTempDirs } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const specs = [
  { name: 'a', dtype: 'F32' as const, shape: [3] }, // 12 bytes: the next tensor needs padding
  { name: 'b', dtype: 'BF16' as const, shape: [2, 5] },
  { name: 'c', dtype: 'F32' as const, shape: [4, 4] },
];

describe('StreamingSafetensorsWriter', () => {
  test('chunks may span tensors; every tensor starts 64-byte aligned; the standard reader reads it back', () => {
    const file = path.join(tempDir('stream'), 'w.safetensors');
    const writer = new StreamingSafetensorsWriter(file, specs, { note: 'x' });
    const a = new Float32Array([1, 2, 3]);
    const b = new Uint16Array(10).map((_, i) => 0x3f80 + i); // bf16 bits of 1.0, 1.0078125, ...
    const c = new Float32Array(16).map((_, i) => -i);
    const all = Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer), Buffer.from(c.buffer)]);
    writer.write(all.subarray(0, 7));
    writer.write(all.subarray(7, 30));
    writer.write(all.subarray(30));
    expect(fs.existsSync(file)).toBe(false); // only the temporary file exists until finish
    writer.finish();
    const read = readSafetensors(file);
    expect(Array.from(read.get('a'))).toEqual([1, 2, 3]);
    expect(Array.from(new Uint16Array(read.raw('b').buffer))).toEqual(Array.from(b));
    expect(Array.from(read.get('c'))).toEqual(Array.from(c));
    expect(read.header.metadata).toEqual({ note: 'x' });
    expect(read.header.dataStart % TENSOR_ALIGNMENT).toBe(0);
    for (const name of ['a', 'b', 'c']) expect(read.header.tensors.get(name)!.begin % TENSOR_ALIGNMENT).toBe(0);
    // padding is explicit U8 tensors, so the data section stays contiguous as the format requires
    const padding = [...read.header.tensors.values()].filter((t) => t.name.startsWith('__pad__.'));
    expect(padding.map((t) => [t.dtype, t.end - t.begin])).toEqual([['U8', 52], ['U8', 44]]);
    const ends = [...read.header.tensors.values()].sort((x, y) => x.begin - y.begin);
    ends.forEach((t, i) => expect(t.begin).toBe(i === 0 ? read.header.dataStart : ends[i - 1].end));
    expect(ends[ends.length - 1].end).toBe(fs.statSync(file).size);
  });

  test('refuses to finish an incomplete file and removes the temporary', () => {
    const dir = tempDir('stream');
    const file = path.join(dir, 'w.safetensors');
    const writer = new StreamingSafetensorsWriter(file, specs);
    writer.write(Buffer.alloc(12));
    expect(() => writer.finish()).toThrow(/incomplete at tensor b \(0 of 20 bytes\)/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('refuses more data than declared, duplicate and reserved names', () => {
    const file = path.join(tempDir('stream'), 'w.safetensors');
    const writer = new StreamingSafetensorsWriter(file, specs.slice(0, 1));
    expect(() => writer.write(Buffer.alloc(13))).toThrow(/more data than the 1 tensors declared/);
    expect(() => new StreamingSafetensorsWriter(file, [specs[0], specs[0]])).toThrow(/listed twice/);
    expect(() => new StreamingSafetensorsWriter(file, [{ ...specs[0], name: '__pad__.0' }])).toThrow(/reserved/);
  });
});
