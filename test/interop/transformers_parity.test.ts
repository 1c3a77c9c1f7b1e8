/**
 * Fixtures made by transformers itself (scripts/make_hf_fixtures.py, run where transformers 5 and PyTorch exist):
 * every test/fixtures/hf/<name>/reference.json holds transformers' logits for a fixed token sequence, and
 * test/fixtures/hf/dsmoe_export/transformers.json what transformers made of dsmoe's export. Until the script has
 * run, the folders hold no such files and these tests are skipped (docs/interop.md: what awaits transformers).
 *
 * DSMOE_WRITE_HF_FIXTURES=1 rewrites test/fixtures/hf/dsmoe_export/ (the export the script loads).
 */
import * as fs from 'fs';
import * as path from 'path';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { referenceForward } from '../../src/model/reference';
import { exportHf } from '../../src/interop/export_hf';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { relativeDifference } from '../helpers/hf_fixtures';

const ROOT = path.join(__dirname, '..', 'fixtures', 'hf');
const EXPORT_DIR = path.join(ROOT, 'dsmoe_export');
const EXPORT_TOP_K = 2;

afterAll(removeTempDirs);

interface Reference {
  tokens: number[];
  logits: number[][];
  text: string;
  text_ids: number[];
  num_experts_per_tok?: number;
}

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

function ourLogits(dir: string, tokens: number[], k: number): Float32Array {
  const dense = readAnyDenseCheckpoint(dir);
  return referenceForward(dense, tokens, { routing: { mode: 'topk', k, renormalize: dense.normTopkProb } }).logits;
}

if (process.env.DSMOE_WRITE_HF_FIXTURES === '1') {
  test('writes test/fixtures/hf/dsmoe_export with dsmoe export', () => {
    const config = { ...tinyConfig, hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, moe_intermediate_size: 12 };
    const dense = tempDir('fixture-dense');
    writeDenseFolder(dense, config, randomDenseWeights(config, 21, 0.4));
    fs.rmSync(EXPORT_DIR, { recursive: true, force: true });
    exportHf(dense, { outDir: EXPORT_DIR, topK: EXPORT_TOP_K, dtype: 'f32' });
    expect(fs.existsSync(path.join(EXPORT_DIR, 'model.safetensors'))).toBe(true);
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
    expect(relativeDifference(ourLogits(dir, reference.tokens, k), expected)).toBeLessThan(1e-3);
    expect(loadAnyTokenizer(dir).encode(reference.text)).toEqual(reference.text_ids);
  });
});

describe('dsmoe export loaded by transformers', () => {
  const resultFile = path.join(EXPORT_DIR, 'transformers.json');
  if (!fs.existsSync(resultFile)) {
    test.skip('no transformers.json yet: run scripts/make_hf_fixtures.py --only export', () => undefined);
    return;
  }
  test('Qwen2MoeForCausalLM, no unexpected or mismatched weights, identical logits and token ids', () => {
    const result = readJson<Reference & { class: string; missing_nonempty_keys: string[]; unexpected_keys: string[]; mismatched_keys: unknown[] }>(resultFile);
    expect(result.class).toBe('Qwen2MoeForCausalLM');
    expect(result.missing_nonempty_keys).toEqual([]); // only the empty [0, d] shared-expert weights may be missing
    expect(result.unexpected_keys).toEqual([]);
    expect(result.mismatched_keys).toEqual([]);
    const expected = Float32Array.from(result.logits.flat());
    expect(relativeDifference(ourLogits(EXPORT_DIR, result.tokens, EXPORT_TOP_K), expected)).toBeLessThan(1e-3);
    expect(loadAnyTokenizer(EXPORT_DIR).encode(result.text)).toEqual(result.text_ids);
  });
});
