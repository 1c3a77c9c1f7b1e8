import fs from 'node:fs';
import { sampleToken, uniformBits } from '../../src/sampling';
import {
  SAMPLER_VECTORS_PATH,
  buildSamplerVectors,
  expandLogits,
  formatSamplerVectors,
  marginProblem,
  readSamplerVectors,
} from '../helpers/sampler_vectors';
import { uniform } from '../../src/sampling';

// The shared vectors: the file must be exactly what the reference and the case list give (so no path is checked
// against a stale answer), and the reference must reproduce every expected token.
describe('sampler vectors (test/fixtures/sampler_vectors.json)', () => {
  test('the committed file is what the reference produces from the case list', () => {
    const fresh = formatSamplerVectors(buildSamplerVectors());
    if (process.env.UPDATE_SAMPLER_VECTORS === '1') fs.writeFileSync(SAMPLER_VECTORS_PATH, fresh);
    expect(fs.readFileSync(SAMPLER_VECTORS_PATH, 'utf8')).toBe(fresh);
  });

  const vectors = readSamplerVectors();

  test('u(seed, counter) equals the independently computed 24-bit values', () => {
    expect(vectors.uniform.length).toBeGreaterThanOrEqual(8);
    for (const v of vectors.uniform) expect([v.seed, v.counter, uniformBits(v.seed, v.counter)]).toEqual([v.seed, v.counter, v.bits]);
  });

  test('the TypeScript sampler gives every expected token, and every draw clears the margins', () => {
    expect(vectors.cases.length).toBeGreaterThanOrEqual(30);
    for (const c of vectors.cases) {
      const logits = expandLogits(c);
      const got = sampleToken(logits, { temperature: c.temperature, topP: c.top_p }, c.seed, c.counter);
      expect({ name: c.name, token: got }).toEqual({ name: c.name, token: c.token });
      expect({ name: c.name, problem: marginProblem(logits, c.temperature, c.top_p, uniform(c.seed, c.counter), vectors.margin) }).toEqual({ name: c.name, problem: null });
    }
  });

  test('the cases cover what the contract distinguishes', () => {
    const cs = vectors.cases;
    const sizes = cs.map((c) => expandLogits(c).length);
    expect(Math.min(...sizes)).toBe(1);
    expect(Math.max(...sizes)).toBeGreaterThan(50000);
    for (const t of [0, 0.7, 1, 1.5]) expect(cs.some((c) => c.temperature === t)).toBe(true);
    for (const p of [1, 0.9, 0.5]) expect(cs.some((c) => c.top_p === p)).toBe(true);
    expect(cs.some((c) => c.top_p < 1e-5)).toBe(true);
    expect(cs.some((c) => c.seed === 0)).toBe(true);
    expect(cs.some((c) => c.seed < 0)).toBe(true);
    expect(cs.some((c) => c.seed > 2 ** 32)).toBe(true);
    expect(cs.some((c) => c.counter === 0)).toBe(true);
    expect(cs.some((c) => c.counter > 2 ** 32)).toBe(true);
  });
});
