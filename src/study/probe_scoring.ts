/**
 * Exact-match scoring of probe items on the native runtime. An item is right when greedy decoding after its prompt
 * produces its answer's tokens exactly. That is decided in one forward pass over prompt + answer (teacher forcing):
 * greedy decoding reproduces the answer iff at every answer position the arg-max of the logits (ties to the lower
 * id, the sampler's greedy rule) is the answer's next token. Prompt and answer are tokenized separately and joined,
 * so with the byte tokenizer this is exactly "the generated text equals the answer". The prompt is read as
 * `dsmoe generate` reads it (encodePrompt: after the BOS of tokenizers that put one before prompts).
 */
import { UserError } from '../errors';
import { encodePrompt, type Tokenizer } from '../data';
import type { SparseModel } from '../runtime/model';
import type { ProbeItem } from './probes';

/** Arg-max of each row from `fromRow` on equals the token after it: logits [T, V], ids [T]. */
export function greedyMatches(logits: Float32Array, vocab: number, ids: ArrayLike<number>, fromRow: number): boolean {
  for (let t = fromRow; t + 1 < ids.length; t++) {
    let best = 0;
    let bestValue = logits[t * vocab];
    for (let v = 1; v < vocab; v++) {
      const value = logits[t * vocab + v];
      if (value > bestValue) {
        best = v;
        bestValue = value;
      }
    }
    if (best !== ids[t + 1]) return false;
  }
  return true;
}

export interface ProbeScore {
  items: number;
  correct: number;
  accuracy: number;
}

/** Accuracy per item kind (task) and over all items, on the model's current mode (plan or dense). */
export async function scoreItems(model: SparseModel, tokenizer: Tokenizer, items: readonly ProbeItem[]): Promise<Record<string, ProbeScore>> {
  const scores: Record<string, ProbeScore> = {};
  const add = (kind: string, right: boolean) => {
    const score = (scores[kind] ??= { items: 0, correct: 0, accuracy: 0 });
    score.items += 1;
    score.correct += right ? 1 : 0;
    score.accuracy = score.correct / score.items;
  };
  for (const item of items) {
    const prompt = encodePrompt(tokenizer, item.prompt); // a model whose tokenizer puts a BOS before prompts reads it first
    const answer = tokenizer.encode(item.answer);
    const ids = [...prompt, ...answer];
    if (prompt.length === 0 || answer.length === 0) throw new UserError(`probe item ${JSON.stringify(item.prompt)}: empty prompt or answer`);
    if (ids.length > model.maxContext) {
      throw new UserError(`probe item of ${ids.length} tokens exceeds the model's context of ${model.maxContext}; lower probes.prompt_chars / answer_chars or probes.digits`);
    }
    const logits = await model.logits(ids);
    const right = greedyMatches(logits, model.vocabSize, ids, prompt.length - 1);
    add(item.kind, right);
    add('all', right);
  }
  return scores;
}
