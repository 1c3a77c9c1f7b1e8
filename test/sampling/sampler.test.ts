import { Sampler, argMax, nucleus, sampleToken, uniform, walk } from '../../src/sampling';

const five = Float32Array.from([0.1, 2, 1.9, -1, 2]); // p ≈ [.04, .30, .27, .01, .30] at T = 1

/** Tokens drawn for counters 0..n−1. */
function draws(logits: Float32Array, temperature: number, topP: number, seed: number, n: number): number[] {
  const sampler = new Sampler({ temperature, topP, seed });
  return Array.from({ length: n }, () => sampler.sample(logits));
}

describe('sampleToken', () => {
  test('temperature ≤ 0 is the arg-max with ties to the lower id, whatever the seed', () => {
    expect(argMax(five)).toBe(1);
    for (const seed of [0, 1, -5]) {
      expect(sampleToken(five, { temperature: 0, topP: 1 }, seed, 3)).toBe(1);
      expect(sampleToken(five, { temperature: -1, topP: 0.5 }, seed, 0)).toBe(1);
    }
  });

  test('the same seed gives the same draws; another seed other draws; top-p keeps the nucleus', () => {
    expect(draws(five, 1, 1, 5, 200)).toEqual(draws(five, 1, 1, 5, 200));
    expect(draws(five, 1, 1, 5, 200)).not.toEqual(draws(five, 1, 1, 6, 200));
    expect(new Set(draws(five, 1, 1, 5, 200)).size).toBe(5);
    // the two 2.0 logits and 1.9 make the 0.8 nucleus
    expect([...new Set(draws(five, 1, 0.8, 5, 200))].sort()).toEqual([1, 2, 4]);
    // a tiny nucleus is the tied maximum: both ids of the tie stay in (τ = their weight)
    expect([...new Set(draws(five, 1, 0.01, 5, 200))].sort()).toEqual([1, 4]);
  });

  test('every token tied with τ is kept: ten equal logits in a 0.5 nucleus are all drawn', () => {
    expect(new Set(draws(new Float32Array(10), 1, 0.5, 7, 400)).size).toBe(10);
    const n = nucleus(Float32Array.from([3, 2, 2, 2, 0, 2]), 1, 0.5);
    expect(Array.from(n.q, (q) => q >= n.tau)).toEqual([true, true, true, true, false, true]);
  });

  test('frequencies follow the softmax', () => {
    const two = Float32Array.from([0, Math.log(3) * 0.5]); // p = [1/4, 3/4] at T = 0.5
    const ones = draws(two, 0.5, 1, 9, 20000).reduce((a, b) => a + b, 0);
    expect(Math.abs(ones / 20000 - 0.75)).toBeLessThan(4 * Math.sqrt((0.25 * 0.75) / 20000));
  });

  test('the walk goes in id order: the kept ids split [0, 1) into consecutive intervals', () => {
    const logits = Float32Array.from([0, Math.log(2), Math.log(3), -Infinity]); // q = [1, 2, 3, 0]: [0, 1/6), [1/6, 1/2), [1/2, 1)
    const n = nucleus(logits, 1, 1);
    expect([0, 0.16, 0.17, 0.49, 0.51, 0.99].map((u) => walk(n, u))).toEqual([0, 0, 1, 1, 2, 2]);
    // the draw for counter c is u(seed, c)
    for (let c = 0; c < 20; c++) {
      const u = uniform(3, c);
      expect(sampleToken(logits, { temperature: 1, topP: 1 }, 3, c)).toBe(u < 1 / 6 ? 0 : u < 1 / 2 ? 1 : 2);
    }
  });

  test('masked tokens (−Infinity) are never drawn', () => {
    const masked = Float32Array.from([-Infinity, 1, -Infinity, 0.5, -Infinity]);
    for (const t of draws(masked, 2, 1, 1, 300)) expect([1, 3]).toContain(t);
  });

  test('rejects bad parameters, seeds, counters and logits with a message naming them', () => {
    const ok = { temperature: 1, topP: 1 };
    expect(() => sampleToken(five, { temperature: NaN, topP: 1 }, 0, 0)).toThrow(/temperature must be a finite number/);
    expect(() => sampleToken(five, { temperature: 1e40, topP: 1 }, 0, 0)).toThrow(/temperature/);
    for (const topP of [0, -0.1, 1.5, NaN, 1e-50]) expect(() => sampleToken(five, { temperature: 1, topP }, 0, 0)).toThrow(/topP must be in \(0, 1\]/);
    expect(() => sampleToken(five, ok, 0.5, 0)).toThrow(/seed must be an integer/);
    expect(() => sampleToken(five, ok, 2 ** 53, 0)).toThrow(/seed/);
    expect(() => sampleToken(five, ok, 0, -1)).toThrow(/counter/);
    expect(() => sampleToken(new Float32Array(0), ok, 0, 0)).toThrow(/at least one/);
    expect(() => sampleToken(Float32Array.from([0, NaN]), ok, 0, 0)).toThrow(/logits\[1\] is NaN/);
    expect(() => sampleToken(Float32Array.from([Infinity]), ok, 0, 0)).toThrow(/logits\[0\]/);
    expect(() => sampleToken(Float32Array.from([-Infinity, -Infinity]), ok, 0, 0)).toThrow(/all −Infinity/);
  });

  test('temperature and top_p are used as f32 values, as the native and CUDA kernels see them', () => {
    const logits = Float32Array.from([0, 0.3, 0.7, 1.1]);
    for (let c = 0; c < 50; c++) {
      expect(sampleToken(logits, { temperature: 0.7, topP: 0.9 }, 1, c)).toBe(sampleToken(logits, { temperature: Math.fround(0.7), topP: Math.fround(0.9) }, 1, c));
    }
  });
});

describe('Sampler', () => {
  test('counts every token, greedy ones too: the n-th token is drawn with counter n', () => {
    const sampler = new Sampler({ temperature: 1, topP: 1, seed: 11 });
    const got = Array.from({ length: 30 }, () => sampler.sample(five));
    expect(got).toEqual(Array.from({ length: 30 }, (_, c) => sampleToken(five, { temperature: 1, topP: 1 }, 11, c)));
    expect(sampler.tokensSampled).toBe(30);
    const greedy = new Sampler({ temperature: 0, topP: 1, seed: 11 });
    greedy.sample(five);
    expect(greedy.tokensSampled).toBe(1);
  });

  test('passes the contract’s arguments to a native kernel and validates options once', () => {
    const calls: unknown[][] = [];
    const sampler = new Sampler({ temperature: 0.7, topP: 0.9, seed: -4 }, (logits, params, seed, counter) => {
      calls.push([params.temperature, params.topP, seed, counter]);
      return 0;
    });
    sampler.sample(five);
    sampler.sample(five);
    expect(calls).toEqual([
      [Math.fround(0.7), Math.fround(0.9), -4, 0],
      [Math.fround(0.7), Math.fround(0.9), -4, 1],
    ]);
    expect(() => new Sampler({ temperature: 1, topP: 2, seed: 0 })).toThrow(/topP/);
    expect(() => new Sampler({ temperature: 1, topP: 1, seed: 1.5 })).toThrow(/seed/);
  });
});
