/**
 * ggml block encodings (src/interop/ggml_types.ts) against blocks worked out by hand from ggml's reference
 * quantizers, and the error bound of every type on random data.
 */
import { decodeGgml, encodeGgml, ggmlByteLength } from '../../src/interop/ggml_types';
import { roundToBf16, roundToF16 } from '../../src/checkpoint/safetensors';
import { seededUniform } from '../helpers/dense_fixtures';

describe('ggml block encodings', () => {
  test('Q8_0: one block by hand — d = max|x| / 127 as f16, q = roundf(x / d), ties away from zero', () => {
    const x = new Float32Array(32);
    x[0] = 127; // amax → d = 1 exactly
    x[1] = -2.5; // roundf(−2.5) = −3 (Math.round would give −2)
    x[2] = 2.5; // → 3
    x[3] = -127;
    x[4] = 0.49;
    x[5] = -0.5; // → −1
    const bytes = encodeGgml(x, 'Q8_0');
    expect(bytes.length).toBe(34);
    expect(bytes.readUInt16LE(0)).toBe(0x3c00); // f16 1.0
    expect([0, 1, 2, 3, 4, 5, 6].map((j) => bytes.readInt8(2 + j))).toEqual([127, -3, 3, -127, 0, -1, 0]);
  });

  test('Q4_0: one block by hand — d = (value of largest magnitude) / −8, element j low nibble, j + 16 high nibble', () => {
    const x = new Float32Array(32);
    x[0] = -16; // max by magnitude, negative → d = 2
    x[1] = 16; // 16 / 2 + 8.5 = 16.5 → 16, clamped to 15
    x[16] = 3; // 1.5 + 8.5 = 10
    x[17] = -3; // −1.5 + 8.5 = 7
    const bytes = encodeGgml(x, 'Q4_0');
    expect(bytes.length).toBe(18);
    expect(bytes.readUInt16LE(0)).toBe(0x4000); // f16 2.0
    const d = 2;
    // x[0]/d = −8 → 0.5 → 0; x[16] → 10: byte 0 = 0 | 10 << 4
    expect(bytes[2]).toBe(0 | (10 << 4));
    expect(bytes[3]).toBe(15 | (7 << 4));
    // zeros: 0 + 8.5 → 8
    expect(bytes[4]).toBe(8 | (8 << 4));
    const back = decodeGgml(bytes, 'Q4_0', 32);
    expect(back[0]).toBe((0 - 8) * d);
    expect(back[1]).toBe((15 - 8) * d);
    expect(back[16]).toBe((10 - 8) * d);
    expect(back[17]).toBe((7 - 8) * d);
  });

  test('an all-zero block has scale 0 and decodes to zeros', () => {
    for (const type of ['Q8_0', 'Q4_0'] as const) {
      const back = decodeGgml(encodeGgml(new Float32Array(64), type), type, 64);
      expect(Array.from(back).every((v) => v === 0)).toBe(true);
    }
  });

  test('every type round-trips random data within its stated bound', () => {
    const rand = seededUniform(5);
    const n = 32 * 50;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (rand() * 2 - 1) * (i % 7 === 0 ? 10 : 1);
    expect(Array.from(decodeGgml(encodeGgml(x, 'F32'), 'F32', n))).toEqual(Array.from(x));
    const f16 = decodeGgml(encodeGgml(x, 'F16'), 'F16', n);
    const bf16 = decodeGgml(encodeGgml(x, 'BF16'), 'BF16', n);
    for (let i = 0; i < n; i++) {
      expect(f16[i]).toBe(roundToF16(x[i]));
      expect(bf16[i]).toBe(roundToBf16(x[i]));
    }
    for (const [type, levels] of [
      ['Q8_0', 127],
      ['Q4_0', 8],
    ] as const) {
      const bytes = encodeGgml(x, type);
      expect(bytes.length).toBe(ggmlByteLength(type, n));
      const back = decodeGgml(bytes, type, n);
      for (let b = 0; b < n / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
        // Q8_0: half a step (amax/127/2) plus the f16 rounding of the scale (2^-11 relative, times up to 127 steps)
        // Q4_0: the one positive level lost to the asymmetric range [−8, 7] costs up to one full step (amax/8)
        const bound = type === 'Q8_0' ? (amax / 127) * (0.5 + 127 * 2 ** -11) : (amax / 8) * (1 + 8 * 2 ** -11);
        for (let j = 0; j < 32; j++) expect(Math.abs(back[b * 32 + j] - x[b * 32 + j])).toBeLessThanOrEqual(bound);
      }
    }
  });

  test('blocks must be whole', () => {
    expect(() => encodeGgml(new Float32Array(40), 'Q8_0')).toThrow(/blocks of 32/);
    expect(() => decodeGgml(new Uint8Array(10), 'Q4_0', 32)).toThrow(/18 bytes/);
  });
});
