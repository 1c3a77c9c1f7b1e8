/**
 * A small seeded generator (mulberry32) owned by one request, so a request's samples depend only on its seed and
 * its own logits, never on which other requests share the batch.
 */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    // Fold any safe integer (negative or above 2^32) into 32 bits, then scramble so nearby seeds diverge at once.
    const low = seed >>> 0;
    const high = Math.floor(seed / 4294967296) >>> 0;
    this.state = (Math.imul(low ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(high, 0xc2b2ae35)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
