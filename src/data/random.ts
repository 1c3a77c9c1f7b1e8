/**
 * Seeded pseudo-random numbers with a state that fits in one uint32, so it can be saved in trainer_state.json and
 * restored exactly. Generator: mulberry32 (period 2^32, passes gjrand/PractRand to a few GB), ample for data
 * order and initialisation. Independent streams come from hashing keys: `rngFor(seed, purpose, step)`.
 */

/** splitmix32-style finaliser: a bijective mix of a 32-bit integer. */
export function mix32(value: number): number {
  let x = (value + 0x9e3779b9) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The generator's whole state; `Rng.fromState(rng.getState())` continues the same sequence. */
  getState(): number {
    return this.state;
  }

  static fromState(state: number): Rng {
    return new Rng(state);
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  }

  /** Uniform integer in [0, n); the bias is below n / 2^53, negligible for any index range. */
  int(n: number): number {
    if (!(n >= 1) || !Number.isSafeInteger(n)) throw new Error(`Rng.int: n must be a positive safe integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Standard normal sample (Box–Muller). */
  normal(): number {
    let u = this.next();
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

/** A generator determined by a list of integer keys alone (e.g. seed, purpose, step). */
export function rngFor(...keys: number[]): Rng {
  let hash = 0x2545f491;
  for (const key of keys) {
    // Mix both 32-bit halves so that keys up to 2^53 (step counters) stay distinct.
    hash = mix32(hash ^ (key >>> 0));
    hash = mix32(hash ^ Math.floor(key / 4294967296));
  }
  return new Rng(hash);
}
