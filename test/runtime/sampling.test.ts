/**
 * The native sampler (`kernels.sample`, native/src/kernels/sampling.cpp) and the runtime's use of it, against the
 * sampler contract: the shared vectors, the TypeScript reference on random rows, and the argument checks.
 */
import { loadNative } from '../../src/runtime/native';
import { nativeSampler } from '../../src/runtime/sampling';
import { Sampler, sampleToken } from '../../src/sampling';
import { expandLogits, readSamplerVectors } from '../helpers/sampler_vectors';

const k = loadNative().kernels;

let state = 777;
function rand(): number {
  state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
  return state / 4294967296;
}

describe('kernels.sample', () => {
  test('gives every expected token of test/fixtures/sampler_vectors.json, fast kernel and plain twin', () => {
    const vectors = readSamplerVectors();
    for (const c of vectors.cases) {
      const logits = expandLogits(c);
      for (const impl of ['fast', 'ref'] as const) {
        const got = k.sample(logits, c.temperature, c.top_p, c.seed, c.counter, { impl });
        expect({ name: c.name, impl, token: got }).toEqual({ name: c.name, impl, token: c.token });
      }
    }
  });

  test('equals the TypeScript reference on random rows (ties, masked tokens, every temperature and top_p)', () => {
    for (let trial = 0; trial < 400; trial++) {
      const V = [1, 2, 5, 33, 257, 1000][trial % 6];
      const quantised = trial % 3 === 1;
      const logits = Float32Array.from({ length: V }, () => (quantised ? Math.round(rand() * 16 - 8) / 2 : rand() * 12 - 6));
      if (trial % 3 === 2) for (let i = 0; i < V - 1; i += 3) logits[i] = -Infinity;
      const temperature = [0, 0.001, 0.5, 0.7, 1, 1.5, 2][trial % 7];
      const topP = [1, 0.95, 0.9, 0.5, 0.1, 1e-6][(trial >> 2) % 6];
      const seed = Math.floor((rand() - 0.5) * 2 ** 53);
      const counter = Math.floor(rand() * 2 ** 40);
      expect(k.sample(logits, temperature, topP, seed, counter)).toBe(sampleToken(logits, { temperature, topP }, seed, counter));
    }
  });

  test('rejects bad arguments with exceptions', () => {
    const l = new Float32Array(3);
    expect(() => k.sample(l, 1, 1, 1.5, 0)).toThrow(/seed must be an integer/);
    expect(() => k.sample(l, 1, 1, 2 ** 53, 0)).toThrow(/seed/);
    expect(() => k.sample(l, 1, 1, 0, -1)).toThrow(/counter must be a non-negative integer/);
    expect(() => k.sample(l, NaN, 1, 0, 0)).toThrow(/temperature/);
    expect(() => k.sample(l, 1, 0, 0, 0)).toThrow(/topP must be in \(0, 1\]/);
    expect(() => k.sample(l, 1, 1.5, 0, 0)).toThrow(/topP/);
    expect(() => k.sample(Float32Array.from([0, NaN]), 1, 1, 0, 0)).toThrow(/logits\[1\]/);
    expect(() => k.sample(Float32Array.from([-Infinity]), 1, 1, 0, 0)).toThrow(/all -Infinity/);
    expect(() => k.sample(new Float32Array(0), 1, 1, 0, 0)).toThrow(/logits/);
    expect(() => k.sample(new Float64Array(3) as unknown as Float32Array, 1, 1, 0, 0)).toThrow(/Float32Array/);
  });
});

describe('nativeSampler', () => {
  test('draws what the TypeScript Sampler draws for the same options, token after token', () => {
    const logits = Float32Array.from({ length: 300 }, () => rand() * 8 - 4);
    for (const options of [
      { temperature: 0.8, topP: 1, seed: 0 },
      { temperature: 1.5, topP: 0.9, seed: -42 },
      { temperature: 0, topP: 1, seed: 3 },
    ]) {
      const native = nativeSampler(k, options);
      const reference = new Sampler(options);
      const a = Array.from({ length: 40 }, () => native.sample(logits));
      expect(a).toEqual(Array.from({ length: 40 }, () => reference.sample(logits)));
    }
  });

  test('defaults to temperature 0.8, top_p 1, seed 0 and names a bad option', () => {
    const s = nativeSampler(k);
    expect([s.temperature, s.topP, s.seed]).toEqual([Math.fround(0.8), 1, 0]);
    expect(() => nativeSampler(k, { seed: 0.5 })).toThrow(/seed/);
    expect(() => nativeSampler(k, { topP: 0 })).toThrow(/topP/);
  });
});
