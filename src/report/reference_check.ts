import { readDenseCheckpoint } from '../checkpoint/read_dense';
import { nextTokenLoss, referenceForward } from '../model/reference';

/**
 * The dense checkpoint scored by the plain TypeScript reference forward (docs/design.md §1), independent of the
 * converter and the native runtime: if the plan's dense mode agrees with it, the report's "dense" row really is
 * the trained dense model. Slow by design, so it runs on a few windows only.
 */
export function referenceLoss(denseDir: string, windows: readonly Int32Array[]): { loss: number; tokens: number } {
  const checkpoint = readDenseCheckpoint(denseDir);
  let sum = 0;
  let count = 0;
  for (const window of windows) {
    const tokens = Array.from(window);
    const { logits } = referenceForward(checkpoint, tokens, { routing: { mode: 'dense' } }); // [T, V]
    const part = nextTokenLoss(logits, tokens, checkpoint.config.vocab_size);
    sum += part.sum;
    count += part.count;
  }
  return { loss: sum / count, tokens: count };
}
