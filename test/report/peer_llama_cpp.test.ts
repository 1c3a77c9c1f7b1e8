/**
 * Cross-engine correctness: a tiny model exported with `dsmoe export --format gguf` runs in llama.cpp (through
 * node-llama-cpp, scripts/peer_llama_cpp.mjs) exactly as dsmoe runs its plan:
 * - llama.cpp tokenizes text as dsmoe's tokenizer does (byte-level BPE, GPT-2 pre-tokenizer);
 * - greedy continuations are the same tokens as `dsmoe generate` (SparseModel.generate, temperature 0) for the
 *   f32 export;
 * - the mean next-token loss on the same windows (`dsmoe eval`'s SparseModel.score) agrees within a stated
 *   tolerance per dtype: f32 1e-4 relative (summation order, and llama.cpp's KV cache is f16), f16 2e-3, q8_0 1e-2
 *   (the weights' rounding).
 * Skipped, with the reason printed, where node-llama-cpp is not installed (README: "llama.cpp as the peer").
 */
import * as path from 'path';
import { convertCheckpoint } from '../../src/convert/convert_checkpoint';
import { loadTokenizer } from '../../src/data/tokenizer';
import { buildTokenizer } from '../../src/data/tokenizer';
import { exportGguf, type GgufDtype } from '../../src/interop/export_gguf';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { SparseModel } from '../../src/runtime/model';
import { llamaCppAvailability, runLlamaCpp } from '../../src/report/peer_llama_cpp';
import type { ModelConfig } from '../../src/model/config';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const availability = llamaCppAvailability();
if (!availability.available) {
  // eslint-disable-next-line no-console
  console.log(`skipping the llama.cpp cross-engine tests: ${availability.reason} (install: npm install --no-save node-llama-cpp@3.21.1, or set DSMOE_NODE_LLAMA_CPP)`);
}
const describeIfLlama = availability.available ? describe : describe.skip;

const config: ModelConfig = {
  ...tinyConfig,
  vocab_size: 300,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 8,
  moe_intermediate_size: 32,
  shared_expert_intermediate_size: 0,
  max_position_embeddings: 128,
};

const CORPUS = 'the cat sat on the mat. the dog sat on the log. then the cat and the dog sat together in 1984, quite happily! ';
const TEXTS = ['the cat sat on the mat', "  two  spaces, 42 dogs & 7 cats... don't stop\n\nnew lines\t tabs", 'unicode: café, naïve, 東京, emoji 🙂 ok'];
const K = 2;

async function fixture(shared: number): Promise<{ dense: string; plan: string }> {
  const c = { ...config, shared_expert_intermediate_size: shared };
  const dense = tempDir('llama-dense');
  writeDenseFolder(dense, c, randomDenseWeights(c, 17, 0.25));
  buildTokenizer({ type: 'bpe', vocab_size: 290 }, CORPUS.repeat(30)).save(dense, { modelMaxLength: c.max_position_embeddings });
  const plan = tempDir('llama-plan');
  await convertCheckpoint(readAnyDenseCheckpoint(dense), {
    outDir: plan,
    strategy: 'topk',
    k: K,
    epsilon: 0.48,
    dtype: 'f32',
    calibWindows: [],
    calibSource: 'test',
    renormalize: false,
    threads: 1,
  });
  return { dense, plan };
}

function exportTo(plan: string, dtype: GgufDtype): string {
  const file = path.join(tempDir(`llama-${dtype}`), `model-${dtype}.gguf`);
  exportGguf(plan, { outFile: file, dtype });
  return file;
}

function results(answer: ReturnType<typeof runLlamaCpp>): unknown[] {
  if (!answer.available) throw new Error(answer.reason);
  return answer.results;
}

describeIfLlama('llama.cpp runs the GGUF export as dsmoe runs the plan', () => {
  // Each child process loads llama.cpp afresh; on a loaded 2-core machine that alone can take tens of seconds.
  test.each([
    ['no shared expert (the zero expert)', 0],
    ['a shared expert', 32],
  ])('%s: tokenization, greedy tokens (f32) and loss (f32, f16, q8_0)', async (_label, shared) => {
    {
      const { plan } = await fixture(shared);
      const tokenizer = loadTokenizer(plan);
      const model = SparseModel.load(plan, { threads: 1 });
      try {
        const f32 = exportTo(plan, 'f32');
        const prompts = TEXTS.map((t) => tokenizer.encode(t));
        const [tokenized, generated] = results(
          runLlamaCpp({ model: f32, threads: 1, contextSize: 128, ops: [{ op: 'tokenize', texts: TEXTS }, { op: 'generate', prompts, maxTokens: 24 }] }),
        ) as [number[][], number[][]];
        expect(tokenized).toEqual(prompts);
        for (let i = 0; i < prompts.length; i++) {
          const ours = await model.generate(prompts[i], { maxNewTokens: 24, temperature: 0 });
          expect([shared, i, generated[i]]).toEqual([shared, i, ours]);
        }

        const text = tokenizer.encode(CORPUS.repeat(4) + TEXTS.join(' '));
        const context = 64;
        const windows: number[][] = [];
        for (let start = 0; start + 1 < text.length; start += context) windows.push(text.slice(start, start + context));
        const ourLoss = (await model.score(text, { context })).loss;
        for (const [dtype, tolerance] of [
          ['f32', 1e-4],
          ['f16', 2e-3],
          ['q8_0', 1e-2],
        ] as const) {
          const file = dtype === 'f32' ? f32 : exportTo(plan, dtype);
          const [scored] = results(runLlamaCpp({ model: file, threads: 1, contextSize: 128, ops: [{ op: 'score', windows }] })) as [{ nll: number; predictions: number }[]];
          const llamaLoss = scored.reduce((s, w) => s + w.nll, 0) / scored.reduce((s, w) => s + w.predictions, 0);
          expect([shared, dtype, Math.abs(llamaLoss - ourLoss) / ourLoss < tolerance, llamaLoss]).toEqual([shared, dtype, true, expect.any(Number)]);
        }
      } finally {
        await model.dispose();
      }
    }
  }, 900_000);
});
