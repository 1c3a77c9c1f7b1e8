/**
 * The sampler's generator (docs/design.md §10): counter-based and stateless, the same function as
 * native/src/common/rng.h, which the C++ kernel and the CUDA kernel include.
 *
 *   z = seed + 0x9E3779B97F4A7C15 · (counter + 1)          (mod 2^64)
 *   z = splitmix64 finaliser of z
 *   u = (z >> 40) / 2^24                                   24 bits: exact in f32 and f64, so every path sees the same u
 *
 * Stateless so that a sequence's draw for its n-th token is a pure function of (seed, n): batch neighbours cannot
 * shift it and a GPU kernel needs nothing but the two numbers. 64-bit arithmetic is done with BigInt, since JS
 * numbers hold only 53 bits.
 */

const MASK = 64;
const GAMMA = 0x9e3779b97f4a7c15n;
const MIX1 = 0xbf58476d1ce4e5b9n;
const MIX2 = 0x94d049bb133111ebn;

/** A seed as the JS API takes it: any safe integer. */
export function checkSeed(seed: number, what = 'seed'): void {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`${what} must be an integer with |${what}| ≤ 2^53 − 1, got ${seed}`);
  }
}

/** The index of a token within its sequence's generated tokens: a non-negative safe integer. */
export function checkCounter(counter: number): void {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new RangeError(`counter must be a non-negative integer ≤ 2^53 − 1, got ${counter}`);
  }
}

/** A safe-integer seed as the generator's uint64: negative seeds wrap (two's complement mod 2^64), as C++'s cast. */
export function seedToUint64(seed: number): bigint {
  checkSeed(seed);
  return BigInt.asUintN(MASK, BigInt(seed));
}

/** The 24-bit integer behind u(seed, counter), in [0, 2^24). */
export function uniformBits(seed: number, counter: number): number {
  checkCounter(counter);
  let z = BigInt.asUintN(MASK, seedToUint64(seed) + GAMMA * (BigInt(counter) + 1n));
  z = BigInt.asUintN(MASK, (z ^ (z >> 30n)) * MIX1);
  z = BigInt.asUintN(MASK, (z ^ (z >> 27n)) * MIX2);
  z ^= z >> 31n;
  return Number(z >> 40n);
}

/** u(seed, counter) in [0, 1): the draw for token number `counter` of a sequence seeded with `seed`. */
export function uniform(seed: number, counter: number): number {
  return uniformBits(seed, counter) / 16777216;
}
