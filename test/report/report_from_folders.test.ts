/**
 * `dsmoe report --dense --sparse` on a tiny trained-looking folder and its k = E plan, on the native runtime (needs
 * the addon): quality comes from the held-out split every command uses, and a changed recipe stops the report.
 */
import * as fs from 'fs';
import * as path from 'path';
import yargs from 'yargs';
import { convertCommand } from '../../src/cli/commands/convert';
import { heldOutSplit } from '../../src/data/held_out_split';
import { windowSequences } from '../../src/data/dataset';
import { nativeReportRuntime } from '../../src/report/native_report_runtime';
import { reportFromFolders, type FolderReportRequest } from '../../src/report/report_from_folders';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { recordRecipe, writeTestRecipe } from '../helpers/recipe_fixtures';

afterAll(removeTempDirs);

describe('reportFromFolders', () => {
  const root = tempDir('report');
  const recipe = writeTestRecipe(root, 'report-test');
  const dense = path.join(root, 'dense');
  writeDenseFolder(dense, tinyConfig, randomDenseWeights(tinyConfig, 41, 0.1));
  recordRecipe(dense, recipe);
  const sparse = path.join(root, 'sparse');
  const request = (extra: Partial<FolderReportRequest>): FolderReportRequest => ({
    outDir: tempDir('report-out'), batches: [1], threads: 1, repeats: 1, promptLen: 4, decodeSteps: 2, peer: false, peerRepeats: 1,
    progress: false, denseDir: null, sparseDir: sparse, evalTokens: 128, epsilons: [], sweep: false, referenceWindows: 1, ...extra,
  });

  beforeAll(async () => {
    const argv = ['convert', dense, '--out', sparse, '--strategy', 'topk', '--k', String(tinyConfig.num_experts), '--calib-tokens', '0', '--quiet'];
    const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await yargs(argv).command(convertCommand).strict().parseAsync();
    } finally {
      write.mockRestore();
    }
  });

  test('scores the validation split the way eval does, through plan.json source.dir', async () => {
    const report = await reportFromFolders(nativeReportRuntime(1, { bandwidthBytesPerArray: 1 << 20 }), request({}));
    const windows = windowSequences(heldOutSplit(dense).windows(32, 128)); // seq_len 32: 4 windows of 32 predictions
    expect(report.quality!.sparse.tokens).toBe(windows.length * 32);
    expect(report.quality!.sparse.loss).toBeCloseTo(report.quality!.dense.loss, 5); // k = E
    expect(report.notes.join('\n')).toContain(`128 predictions in 4 windows, each scored from position 0; text: validation split of ${recipe} (seed 1234)`);
  });

  test('a changed recipe is an error (it used to be a note in the report)', async () => {
    const changed = path.join(root, 'recipes', 'changed.yaml');
    fs.writeFileSync(changed, fs.readFileSync(recipe, 'utf8').replace('seed: 1234', 'seed: 99'));
    await expect(reportFromFolders(nativeReportRuntime(1, { bandwidthBytesPerArray: 1 << 20 }), request({ recipe: changed }))).rejects.toThrow(`${changed}: not the recipe ${dense} was trained with`);
  });
});
