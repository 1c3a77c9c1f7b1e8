/**
 * Fixtures made by transformers itself (scripts/make_hf_fixtures.py, run where transformers 5 and PyTorch exist):
 * every test/fixtures/hf/<name>/reference.json holds transformers' logits and loss for a fixed token sequence, and
 * test/fixtures/hf/dsmoe_export{,_dense}/transformers.json what transformers made of dsmoe's exports (top-2, and
 * k = E: the dense model). Until the script has run, the folders hold no such files and these tests are skipped
 * (docs/interop.md: what awaits transformers).
 *
 * DSMOE_WRITE_HF_FIXTURES=1 rewrites both export folders (what the script loads), each with dsmoe.json: dsmoe's own
 * logits and loss on the script's tokens, which the script compares with transformers' at once.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import { exportHf } from '../../src/interop/export_hf';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { relativeDifference } from '../helpers/hf_fixtures';

const ROOT = path.join(__dirname, '..', 'fixtures', 'hf');
// the exports the script loads: exported top-2, and exported with k = E (every expert: the dense model)
const EXPORTS = [
  { name: 'dsmoe_export', topK: 2 },
  { name: 'dsmoe_export_dense', topK: 4 },
];
// scripts/make_hf_fixtures.py TOKENS: the ids both sides score
const TOKENS = [3, 250, 17, 99, 42, 7, 256, 128, 64, 5, 200, 31];

afterAll(removeTempDirs);

interface Reference {
  tokens: number[];
  logits: number[][];
  loss?: number; // mean next-token cross-entropy over tokens, nats
  text: string;
  text_ids: number[];
  num_experts_per_tok?: number;
}

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

function ourForward(dir: string, tokens: number[], k: number): { logits: Float32Array; loss: number } {
  const dense = readAnyDenseCheckpoint(dir);
  const { logits } = referenceForward(dense, tokens, { routing: { mode: 'topk', k, renormalize: dense.normTopkProb } });
  const { sum, count } = nextTokenLoss(logits, tokens, dense.config.vocab_size);
  return { logits, loss: sum / count };
}

if (process.env.DSMOE_WRITE_HF_FIXTURES === '1') {
  test.each(EXPORTS)('writes test/fixtures/hf/$name with dsmoe export --top-k $topK, and dsmoe.json', ({ name, topK }) => {
    const config = { ...tinyConfig, hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, moe_intermediate_size: 12 };
    const dense = tempDir('fixture-dense');
    writeDenseFolder(dense, config, randomDenseWeights(config, 21, 0.4));
    const dir = path.join(ROOT, name);
    fs.rmSync(dir, { recursive: true, force: true });
    exportHf(dense, { outDir: dir, topK, dtype: 'f32' });
    const ours = ourForward(dir, TOKENS, topK);
    fs.writeFileSync(path.join(dir, 'dsmoe.json'), JSON.stringify({ tokens: TOKENS, top_k: topK, logits: Array.from(ours.logits), loss: ours.loss }));
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(true);
  });
}

const made = fs.existsSync(ROOT)
  ? fs.readdirSync(ROOT).filter((name) => fs.existsSync(path.join(ROOT, name, 'reference.json')))
  : [];

describe('fixtures made by transformers', () => {
  if (made.length === 0) {
    test.skip('no reference.json yet: run scripts/make_hf_fixtures.py where transformers 5 is installed', () => undefined);
    return;
  }
  test.each(made)('%s: imported logits within 1e-3 of transformers, same token ids', (name) => {
    const dir = path.join(ROOT, name);
    const reference = readJson<Reference>(path.join(dir, 'reference.json'));
    const expected = Float32Array.from(reference.logits.flat());
    const k = reference.num_experts_per_tok ?? readAnyDenseCheckpoint(dir).config.num_experts_per_tok;
    const ours = ourForward(dir, reference.tokens, k);
    expect(relativeDifference(ours.logits, expected)).toBeLessThan(1e-3);
    if (reference.loss !== undefined) expect(Math.abs(ours.loss - reference.loss) / reference.loss).toBeLessThan(1e-3);
    expect(loadAnyTokenizer(dir).encode(reference.text)).toEqual(reference.text_ids);
  });
});

describe.each(EXPORTS)('dsmoe export (top-$topK) loaded by transformers', ({ name, topK }) => {
  const EXPORT_DIR = path.join(ROOT, name);
  const resultFile = path.join(EXPORT_DIR, 'transformers.json');
  test('dsmoe.json holds what dsmoe computes now for the committed export', () => {
    const saved = readJson<{ tokens: number[]; logits: number[]; loss: number }>(path.join(EXPORT_DIR, 'dsmoe.json'));
    expect(saved.tokens).toEqual(TOKENS);
    const ours = ourForward(EXPORT_DIR, TOKENS, topK);
    expect(relativeDifference(ours.logits, Float32Array.from(saved.logits))).toBeLessThan(1e-6);
    expect(ours.loss).toBeCloseTo(saved.loss, 6);
  });
  if (!fs.existsSync(resultFile)) {
    test.skip('no transformers.json yet: run scripts/make_hf_fixtures.py --only export', () => undefined);
    return;
  }
  test('Qwen2MoeForCausalLM, no unexpected or mismatched weights, identical logits, loss and token ids', () => {
    const result = readJson<Reference & { class: string; missing_nonempty_keys: string[]; unexpected_keys: string[]; mismatched_keys: unknown[] }>(resultFile);
    expect(result.class).toBe('Qwen2MoeForCausalLM');
    expect(result.missing_nonempty_keys).toEqual([]); // only the empty [0, d] shared-expert weights may be missing
    expect(result.unexpected_keys).toEqual([]);
    expect(result.mismatched_keys).toEqual([]);
    const expected = Float32Array.from(result.logits.flat());
    const ours = ourForward(EXPORT_DIR, result.tokens, topK);
    expect(relativeDifference(ours.logits, expected)).toBeLessThan(1e-3);
    if (result.loss !== undefined) expect(Math.abs(ours.loss - result.loss) / result.loss).toBeLessThan(1e-3);
    expect(loadAnyTokenizer(EXPORT_DIR).encode(result.text)).toEqual(result.text_ids);
  });
});
