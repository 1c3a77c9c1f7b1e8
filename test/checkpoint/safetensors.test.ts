import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  readSafetensors,
  readSafetensorsHeader,
  roundToBf16,
  roundToF16,
  writeSafetensors,
} from '../../src/checkpoint/safetensors';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-st-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Bits of a float32 value, for exact comparisons. */
function f32Bits(value: number): number {
  return new Uint32Array(new Float32Array([value]).buffer)[0];
}

// --- conversions against hand-computed bit patterns ----------------------------------------------------------------

describe('bf16', () => {
  test.each([
    [1.0, 0x3f80],
    [-2.0, 0xc000],
    [0.0, 0x0000],
    [-0.0, 0x8000],
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [3.4028234663852886e38, 0x7f80], // float32 max rounds up to inf in bf16 (mantissa all ones)
    [1 + 2 ** -8, 0x3f80], // exactly half way between 0x3f80 and 0x3f81: ties to even (down)
    [1 + 3 * 2 ** -8, 0x3f82], // half way between 0x3f81 and 0x3f82: ties to even (up)
    [1 + 2 ** -8 + 2 ** -20, 0x3f81], // just above half way: up
    [2 ** -133, 0x0001], // float32 subnormal 2^16 · 2^-149 (bits 0x00010000) is exact in bf16
    [1e-45, 0x0000], // smallest float32 subnormal (bits 0x1) rounds to zero
  ])('f32 %p -> bf16 0x%s', (value, expected) => {
    expect(f32ToBf16(new Float32Array([value]))[0]).toBe(expected);
  });

  test('NaN stays NaN (quiet, sign kept) and widening is exact', () => {
    const nan = f32ToBf16(new Float32Array([NaN]))[0];
    expect(nan & 0x7fc0).toBe(0x7fc0);
    expect(Number.isNaN(bf16ToF32(new Uint16Array([nan]))[0])).toBe(true);
    // A signalling NaN whose payload lives only in the low bits must not become infinity.
    const signalling = new Float32Array(new Uint32Array([0x7f800001]).buffer);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(signalling))[0])).toBe(true);
    expect(Array.from(bf16ToF32(new Uint16Array([0x3f80, 0xc000, 0x7f80, 0x0001])))).toEqual([1, -2, Infinity, 2 ** -133]);
  });

  test('every bf16 value survives widening and narrowing', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToBf16(bf16ToF32(all));
    const wrong: number[] = []; // collected and asserted once: 65536 separate expects are slow
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (isNaN ? (back[i] & 0x7fc0) !== 0x7fc0 : back[i] !== i) wrong.push(i);
    }
    expect(wrong).toEqual([]);
  });
});

describe('f16', () => {
  test.each([
    [1.0, 0x3c00],
    [-2.0, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest half
    [65519.99, 0x7bff], // below the rounding boundary 65520
    [65520, 0x7c00], // half way to the next (non-existent) value: ties to even = inf
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [-0.0, 0x8000],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even = 0
    [2 ** -25 + 2 ** -40, 0x0001], // just above: rounds up
    [3 * 2 ** -25, 0x0002], // 1.5 subnormal steps: ties to even = 2
    [2 ** -14 - 2 ** -25, 0x0400], // half way between largest subnormal 0x3ff and 0x400: even = 0x400
    [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [0.1, 0x2e66], // 0.1 = 0x2e66 in half (0.0999755859375)
  ])('f32 %p -> f16 0x%s', (value, expected) => {
    expect(f32ToF16(new Float32Array([value]))[0]).toBe(expected);
  });

  test('NaN is a quiet NaN, widening handles subnormals, inf and NaN', () => {
    expect(f32ToF16(new Float32Array([NaN]))[0] & 0x7e00).toBe(0x7e00);
    const widened = f16ToF32(new Uint16Array([0x0001, 0x03ff, 0x0400, 0x3555, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000]));
    expect(Array.from(widened.subarray(0, 7))).toEqual([
      2 ** -24,
      1023 * 2 ** -24,
      2 ** -14,
      0.333251953125, // 0x3555 = (1 + 341/1024) / 4
      65504,
      Infinity,
      -Infinity,
    ]);
    expect(Number.isNaN(widened[7])).toBe(true);
    expect(Object.is(widened[8], -0)).toBe(true);
  });

  test('every half value survives widening and narrowing; scalar helpers agree with the bulk ones', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    const wrong: number[] = [];
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN ? (back[i] & 0x7e00) !== 0x7e00 : back[i] !== i) wrong.push(i);
    }
    expect(wrong).toEqual([]);
    expect(roundToF16(0.1)).toBe(0.0999755859375);
    expect(f32Bits(roundToBf16(Math.PI))).toBe(0x40490000); // pi = 0x40490fdb → 0x4049 (remainder < half)
  });
});

describe('rounding is to the nearest representable value (property check on random inputs)', () => {
  // For positive x, the neighbours of code h are h − 1 and h + 1; the chosen code must be at least as close as both,
  // and on an exact tie it must be even. Inputs span the subnormal and normal ranges of each format.
  const check = (narrow: (x: Float32Array) => Uint16Array, widen: (h: Uint16Array) => Float32Array, minExp: number, maxExp: number) => {
    let state = 12345;
    const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const values = Float32Array.from({ length: 20000 }, () => 2 ** (minExp + random() * (maxExp - minExp)));
    const codes = narrow(values);
    const problems: string[] = [];
    values.forEach((x, i) => {
      const h = codes[i];
      const [below, at, above] = widen(Uint16Array.of(h - 1, h, h + 1));
      const error = Math.abs(at - x);
      const best = Math.min(Math.abs(below - x), Math.abs(above - x));
      if (error > best || (error === best && (h & 1) === 1)) problems.push(`${x} -> 0x${h.toString(16)}`);
    });
    expect(problems).toEqual([]);
  };
  test('f16', () => check(f32ToF16, f16ToF32, -25, 15.99));
  test('bf16', () => check(f32ToBf16, bf16ToF32, -133, 127.9));
});

// --- round trip ----------------------------------------------------------------------------------------------------

describe('round trip', () => {
  test('every dtype, metadata, empty and scalar tensors', () => {
    const file = path.join(dir, 'all.safetensors');
    const f32 = new Float32Array([1.5, -2.25, 3e-8, 1e30, 0, -0, 7, 8]);
    const forHalf = new Float32Array([1, 0.1, -65504, 2 ** -24, 1 / 3, 100.0625]);
    const rawBf16 = new Uint16Array([0x3f80, 0x4000, 0xbf80]);
    const i32 = new Int32Array([-2147483648, -1, 0, 2147483647]);
    const i64 = Buffer.alloc(16);
    i64.writeBigInt64LE(-5n, 0);
    i64.writeBigInt64LE(1n << 40n, 8);
    writeSafetensors(
      file,
      [
        { name: 'a.f32', dtype: 'F32', shape: [2, 4], data: f32 },
        { name: 'b.f16', dtype: 'F16', shape: [3, 2], data: forHalf },
        { name: 'c.bf16', dtype: 'BF16', shape: [6], data: forHalf },
        { name: 'd.bf16raw', dtype: 'BF16', shape: [3], data: rawBf16 },
        { name: 'e.i32', dtype: 'I32', shape: [4], data: i32 },
        { name: 'f.i64', dtype: 'I64', shape: [2], data: i64 },
        { name: 'g.u8', dtype: 'U8', shape: [3], data: Buffer.from([0, 128, 255]) },
        { name: 'h.empty', dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
        { name: 'i.scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
      ],
      { format: 'pt', note: 'ünïcode ✓' },
    );
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0); // data section aligned

    const st = readSafetensors(file);
    expect(st.header.metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect([...st.header.tensors.keys()].sort()).toEqual([
      'a.f32', 'b.f16', 'c.bf16', 'd.bf16raw', 'e.i32', 'f.i64', 'g.u8', 'h.empty', 'i.scalar',
    ]);
    expect(st.header.tensors.get('b.f16')).toMatchObject({ dtype: 'F16', shape: [3, 2] });
    expect(Array.from(st.get('a.f32'))).toEqual(Array.from(f32));
    expect(Object.is(st.get('a.f32')[5], -0)).toBe(true);
    // Half precision: each value equals its own f16/bf16 rounding (exact reference above), error within 2^-11 / 2^-8.
    const half = st.get('b.f16');
    const brain = st.get('c.bf16');
    forHalf.forEach((v, i) => {
      expect(half[i]).toBe(roundToF16(v));
      expect(Math.abs(half[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
      expect(brain[i]).toBe(roundToBf16(v));
      expect(Math.abs(brain[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
    });
    expect(Array.from(st.get('d.bf16raw'))).toEqual([1, 2, -1]);
    expect(Array.from(new Uint16Array(st.raw('d.bf16raw').buffer))).toEqual([0x3f80, 0x4000, 0xbf80]);
    // get() converts to float32: 2^31 − 1 is not representable and becomes 2^31; raw() keeps the exact value.
    expect(Array.from(st.get('e.i32'))).toEqual([-2147483648, -1, 0, 2147483648]);
    expect(Array.from(new Int32Array(st.raw('e.i32').buffer))).toEqual(Array.from(i32));
    expect(st.raw('f.i64').readBigInt64LE(8)).toBe(1n << 40n);
    expect(Array.from(st.get('f.i64'))).toEqual([-5, 2 ** 40]);
    expect(Array.from(st.get('g.u8'))).toEqual([0, 128, 255]);
    expect(st.get('h.empty').length).toBe(0);
    expect(Array.from(st.get('i.scalar'))).toEqual([42]);
    expect(() => st.get('missing')).toThrow(/no tensor named "missing"/);
  });

  test('the header reader reads only the header: it works on a file whose data section is huge and sparse', () => {
    const file = path.join(dir, 'big.safetensors');
    const count = 64 * 1024 * 1024; // 256 MB of F32, never read
    const header = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [count], data_offsets: [0, count * 4] } }));
    const fd = fs.openSync(file, 'w');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    fs.writeSync(fd, length);
    fs.writeSync(fd, header);
    fs.ftruncateSync(fd, 8 + header.length + count * 4); // sparse: no disk used
    fs.closeSync(fd);
    const parsed = readSafetensorsHeader(file);
    expect(parsed.tensors.get('w')).toEqual({ name: 'w', dtype: 'F32', shape: [count], begin: 8 + header.length, end: parsed.fileSize });
    fs.rmSync(file);
  });

  test('writing refuses data that does not match the shape, and leaves no file behind', () => {
    const file = path.join(dir, 'bad-write.safetensors');
    expect(() => writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) }])).toThrow(
      /tensor "x": shape \[3\] of F32 needs 12 bytes, data has 8/,
    );
    expect(() => writeSafetensors(file, [{ name: 'x', dtype: 'I32', shape: [2], data: new Float32Array(2) }])).toThrow(/not I32/);
    expect(fs.existsSync(file)).toBe(false);
  });
});

// --- malformed files -----------------------------------------------------------------------------------------------

/** A file made of a header length, header bytes and a data section. */
function rawFile(name: string, header: string | Buffer, dataBytes = 0, lengthOverride?: bigint): string {
  const headerBytes = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(lengthOverride ?? BigInt(headerBytes.length));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([length, headerBytes, Buffer.alloc(dataBytes)]));
  return file;
}

const tensor = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });

describe('malformed files are rejected with a message naming the problem', () => {
  const cases: [string, () => string, RegExp][] = [
    ['empty file', () => {
      const file = path.join(dir, 'empty.safetensors');
      fs.writeFileSync(file, Buffer.alloc(0));
      return file;
    }, /empty\.safetensors: 0 bytes is too short/],
    ['truncated header length', () => {
      const file = path.join(dir, 'short.safetensors');
      fs.writeFileSync(file, Buffer.from([2, 0, 0]));
      return file;
    }, /3 bytes is too short for a safetensors file/],
    ['header length beyond the file', () => rawFile('beyond.st', '{}', 0, 1000n), /header length 1000 runs past the end of the 10-byte file/],
    ['header length above the bound', () => rawFile('huge.st', '{}', 0, 1n << 40n), /header length 1099511627776 exceeds the 104857600-byte limit/],
    ['header length below 2', () => rawFile('tiny.st', '{}', 0, 1n), /header length 1 is too small/],
    ['invalid UTF-8', () => rawFile('utf8.st', Buffer.from([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/],
    ['non-JSON header', () => rawFile('nonjson.st', '{"a": '), /header is not valid JSON/],
    ['JSON array header', () => rawFile('array.st', '[1, 2]'), /header must be a JSON object, got an array/],
    ['JSON number header', () => rawFile('number.st', '42'), /header must be a JSON object, got 42/],
    ['tensor entry not an object', () => rawFile('entry.st', JSON.stringify({ w: 5 })), /tensor "w": expected an object/],
    ['unknown dtype', () => rawFile('dtype.st', JSON.stringify({ w: tensor('F64', [1], [0, 8]) }), 8), /tensor "w": dtype "F64" is not one of F32, F16, BF16, I32, I64, U8/],
    ['negative dimension', () => rawFile('shape.st', JSON.stringify({ w: tensor('F32', [2, -1], [0, 0]) })), /tensor "w": shape \[2,-1\] must be an array of non-negative integers/],
    ['fractional dimension', () => rawFile('shape2.st', JSON.stringify({ w: tensor('F32', [1.5], [0, 4]) }), 4), /tensor "w": shape \[1.5\]/],
    ['shape not an array', () => rawFile('shape3.st', JSON.stringify({ w: tensor('F32', '4', [0, 16]) }), 16), /tensor "w": shape "4"/],
    ['offsets reversed', () => rawFile('rev.st', JSON.stringify({ w: tensor('F32', [1], [8, 4]) }), 8), /tensor "w": data_offsets \[8,4\] must be \[begin, end\] with 0 <= begin <= end/],
    ['offsets malformed', () => rawFile('off3.st', JSON.stringify({ w: tensor('F32', [1], [0]) }), 8), /data_offsets \[0\] must be \[begin, end\]/],
    ['offsets out of range', () => rawFile('range.st', JSON.stringify({ w: tensor('F32', [4], [0, 16]) }), 12), /tensor "w": data_offsets \[0,16\] run past the data section \(12 bytes\)/],
    ['size mismatch', () => rawFile('size.st', JSON.stringify({ w: tensor('F16', [2, 3], [0, 16]) }), 16), /tensor "w": shape \[2,3\] of F16 needs 12 bytes but data_offsets \[0,16\] hold 16/],
    ['overlapping tensors', () => rawFile('overlap.st', JSON.stringify({ a: tensor('F32', [2], [0, 8]), b: tensor('F32', [2], [4, 12]) }), 12), /tensors "a" and "b" overlap/],
    ['metadata values not strings', () => rawFile('meta.st', JSON.stringify({ __metadata__: { step: 5 } })), /__metadata__\.step must be a string, got 5/],
    ['metadata not an object', () => rawFile('meta2.st', JSON.stringify({ __metadata__: ['x'] })), /__metadata__ must be an object of strings/],
    ['unknown tensor field', () => rawFile('field.st', JSON.stringify({ w: { ...tensor('F32', [1], [0, 4]), scale: 2 } }), 4), /tensor "w": unknown field "scale"/],
  ];

  test.each(cases)('%s', (_label, make, message) => {
    const file = make();
    expect(() => readSafetensorsHeader(file)).toThrow(message);
    expect(() => readSafetensors(file)).toThrow(path.basename(file)); // every message names the file
  });

  test('a missing file is reported with its path', () => {
    expect(() => readSafetensorsHeader(path.join(dir, 'nope.safetensors'))).toThrow(/nope\.safetensors: cannot open \(ENOENT\)/);
  });
});
