import { buildTokenizer } from '../../src/data';
import type { ModelConfig } from '../../src/model/config';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { SparseModel } from '../../src/runtime/model';
import { greedyMatches, scoreItems } from '../../src/study/probe_scoring';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const config: ModelConfig = {
  vocab_size: 300,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_experts: 4,
  moe_intermediate_size: 8,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 48,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
};

describe('exact-match scoring', () => {
  test('one teacher-forced pass agrees with greedy decoding on the native runtime', async () => {
    const dir = tempDir('probe-plan');
    writeRandomPlan(dir, config, { dtype: 'f32', seed: 3, k: 2 });
    const model = SparseModel.load(dir, { threads: 1 });
    try {
      for (const [seed, mode] of [[1, 'plan'], [2, 'dense']] as const) {
        model.setMode(mode);
        const prompt = Array.from({ length: 10 }, (_, i) => (seed * 37 + i * 11) % 300);
        const generated = await model.generate(prompt, { maxNewTokens: 8, temperature: 0 });
        const ids = [...prompt, ...generated];
        const logits = await model.logits(ids);
        expect(greedyMatches(logits, 300, ids, prompt.length - 1)).toBe(true);
        for (const at of [0, 7]) {
          const wrong = [...ids];
          wrong[prompt.length + at] = (wrong[prompt.length + at] + 1) % 300;
          expect(greedyMatches(await model.logits(wrong), 300, wrong, prompt.length - 1)).toBe(false);
        }
      }
    } finally {
      await model.dispose();
    }
  });

  test('ties go to the lower id, as greedy sampling does', () => {
    const logits = new Float32Array([1, 3, 3, 0, /* row 1 */ 5, 5, 0, 0]);
    expect(greedyMatches(logits, 4, [0, 1, 0], 0)).toBe(true);
    expect(greedyMatches(logits, 4, [0, 2, 0], 0)).toBe(false);
    expect(greedyMatches(logits, 4, [0, 1, 1], 0)).toBe(false);
  });

  test('accuracy per item kind, on items scripted to be right or wrong', async () => {
    const tokenizer = buildTokenizer({ type: 'byte', vocab_size: 257 }, '');
    // A stand-in model whose logits always favour the token after each position in a fixed text.
    const text = '12+30=42\n';
    const ids = tokenizer.encode(text);
    const fake = {
      maxContext: 64,
      vocabSize: 257,
      logits: async (sequence: number[]) => {
        const out = new Float32Array(sequence.length * 257);
        sequence.forEach((_, t) => (out[t * 257 + (ids[t + 1] ?? 0)] = 1));
        return out;
      },
    } as unknown as SparseModel;
    const scores = await scoreItems(fake, tokenizer, [
      { kind: 'addition', prompt: '12+30=', answer: '42\n' },
      { kind: 'addition', prompt: '12+30=', answer: '43\n' },
      { kind: 'modular', prompt: '12+3', answer: '0=42\n' },
    ]);
    expect(scores.addition).toEqual({ items: 2, correct: 1, accuracy: 0.5 });
    expect(scores.modular).toEqual({ items: 1, correct: 1, accuracy: 1 });
    expect(scores.all).toEqual({ items: 3, correct: 2, accuracy: 2 / 3 });
    await expect(scoreItems({ ...fake, maxContext: 4 } as unknown as SparseModel, tokenizer, [{ kind: 'a', prompt: '12+30=', answer: '42\n' }])).rejects.toThrow(/exceeds the model's context of 4/);
  });
});
