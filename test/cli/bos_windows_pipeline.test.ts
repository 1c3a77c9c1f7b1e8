/**
 * An imported model whose tokenizer puts a BOS before prompts (the Llama fixture, <s> = 1) through convert, report,
 * eval and the study's probe scoring (needs the addon): a random-init dense folder of the tiny shape with the
 * fixture's 1500-id vocabulary and its tokenizer files. Every window these commands score or calibrate on starts with
 * <s>, by the held-out split's one rule (src/data/held_out_split.ts), and eval and report give the same loss for the
 * same windows. The references are built here from the tokenizer's ids, not from the split.
 */
import * as fs from 'fs';
import * as path from 'path';
import yargs from 'yargs';
import { convertCommand } from '../../src/cli/commands/convert';
import { DEFAULT_EPSILON, convertCheckpoint } from '../../src/convert/convert_checkpoint';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { nativeReportRuntime } from '../../src/report/native_report_runtime';
import { reportFromFolders } from '../../src/report/report_from_folders';
import { referenceLoss } from '../../src/report/reference_check';
import { evaluateSparse } from '../../src/runtime/eval';
import { SparseModel } from '../../src/runtime/model';
import { scoreItems } from '../../src/study/probe_scoring';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizers');
const config = { ...tinyConfig, vocab_size: 1500 }; // 64 positions
const root = tempDir('bos-windows');
const dense = path.join(root, 'dense');
writeDenseFolder(dense, config, randomDenseWeights(config, 19, 0.3));
for (const file of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(FIXTURES, 'llama_bpe_legacy', file), path.join(dense, file));
const tokenizer = loadAnyTokenizer(dense);
const reference = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'reference.json'), 'utf8'));
const text = reference.llama_bpe_legacy.map((row: { text: string }) => row.text).join('\n').repeat(3);
const textFile = path.join(root, 'held_out.txt');
fs.writeFileSync(textFile, text);
const ids = tokenizer.encode(text);

/** <s> followed by the next `step` text tokens, window after window; `whole`: full windows only. */
function bosWindows(step: number, whole: boolean): Int32Array[] {
  const windows: Int32Array[] = [];
  for (let start = 0; start < ids.length && (!whole || start + step <= ids.length); start += step) windows.push(Int32Array.from([1, ...ids.slice(start, start + step)]));
  return windows;
}

async function runConvert(argv: string[]): Promise<void> {
  const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    await yargs(['convert', ...argv]).command(convertCommand).strict().parseAsync();
  } finally {
    write.mockRestore();
  }
}

const sparse = path.join(root, 'sparse');
const calibration = { context: 32, tokens: 256 }; // 8 windows of <s> + 31 text tokens

beforeAll(async () => {
  expect(tokenizer.bosId).toBe(1);
  expect(ids.length).toBeGreaterThan(8 * 31);
  await runConvert([dense, '--out', sparse, '--strategy', 'topk', '--k', '2', '--calib-text', textFile, '--calib-tokens', String(calibration.tokens), '--calib-context', String(calibration.context), '--threads', '1', '--quiet']);
});

test('convert calibrates on windows of <s> + the next context − 1 tokens', async () => {
  const written = JSON.parse(fs.readFileSync(path.join(sparse, 'calibration.json'), 'utf8'));
  const windows = bosWindows(calibration.context - 1, true).slice(0, calibration.tokens / calibration.context);
  expect(windows).toHaveLength(8);
  expect(written).toMatchObject({ windows: 8, context: 32, tokens: 256 });
  // the same conversion fed those windows directly writes the same calibration
  const out = tempDir('bos-windows-direct');
  const direct = await convertCheckpoint(readAnyDenseCheckpoint(dense), {
    outDir: out, strategy: 'topk', k: 2, epsilon: DEFAULT_EPSILON, dtype: 'f32', calibWindows: windows.map((w) => Array.from(w)), calibSource: textFile, renormalize: false, threads: 1,
  });
  expect(written).toEqual(JSON.parse(JSON.stringify(direct.calibration)));
  // and its dense loss is the reference forward's on them, not on windows without <s>
  const withBos = referenceLoss(dense, windows).loss;
  const plain = Array.from({ length: 8 }, (_, i) => Int32Array.from(ids.slice(i * 32, (i + 1) * 32))); // the cut without a BOS
  const withoutBos = referenceLoss(dense, plain).loss;
  expect(written.loss.dense).toBeCloseTo(withBos, 5);
  expect(Math.abs(withBos - withoutBos)).toBeGreaterThan(1e-3);
});

test('report scores windows of <s> + the next 63 tokens, and eval gives the same loss for them', async () => {
  const report = await reportFromFolders(nativeReportRuntime(1, { bandwidthBytesPerArray: 1 << 20 }), {
    outDir: tempDir('bos-windows-report'), batches: [1], threads: 1, repeats: 1, promptLen: 4, decodeSteps: 2, peer: false, peerRepeats: 1,
    progress: false, denseDir: dense, sparseDir: sparse, text: textFile, evalTokens: 1e6, epsilons: [], sweep: false, referenceWindows: 2,
  });
  const quality = report.quality!;
  expect(quality.sparse.tokens).toBe(ids.length); // every text token predicted, the first of each window from <s>
  expect(report.notes.join('\n')).toContain(`${ids.length} predictions in ${bosWindows(63, false).length} windows, each scored from position 0, each starting with the tokenizer's BOS (id 1); text: ${textFile}`);
  // the report's reference check runs the dense checkpoint's plain forward on its first two windows: <s> first
  expect(report.reference_check!.reference_loss).toBeCloseTo(referenceLoss(dense, bosWindows(63, false).slice(0, 2)).loss, 5);
  for (const mode of ['plan', 'dense'] as const) {
    const evaluated = await evaluateSparse(sparse, { text: textFile, context: 64, threads: 1, device: 'cpu', mode });
    expect(evaluated.tokens).toBe(ids.length);
    expect(evaluated.loss).toBeCloseTo(quality[mode === 'plan' ? 'sparse' : 'dense'].loss, 5);
  }
});

test('study probe scoring reads a prompt after <s>, as generate does', async () => {
  const model = SparseModel.load(sparse, { threads: 1 });
  try {
    const logits = jest.spyOn(model, 'logits');
    const item = { kind: 'memorization', prompt: 'In the beginning', answer: ' God created' };
    const scores = await scoreItems(model, tokenizer, [item]);
    expect(scores.memorization.items).toBe(1);
    expect(Array.from(logits.mock.calls[0][0])).toEqual([1, ...tokenizer.encode(item.prompt), ...tokenizer.encode(item.answer)]);
  } finally {
    await model.dispose();
  }
});
