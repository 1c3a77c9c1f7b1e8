import * as fs from 'fs';
import * as path from 'path';
import { packageRoot } from '../../src/data';
import { runStudy, type StudyOptions } from '../../src/study/run_study';
import type { PointResult } from '../../src/study/run_point';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const smoke = path.join(packageRoot(), 'studies', 'smoke.yaml');

function options(outDir: string, extra: Partial<StudyOptions> = {}): StudyOptions {
  return { studyFile: smoke, outDir, resume: false, jobs: 1, backend: 'wasm', kernels: 'auto', threads: 1, verbose: false, command: 'dsmoe study studies/smoke.yaml', ...extra };
}

describe('dsmoe study studies/smoke.yaml', () => {
  const out = tempDir('study-smoke');
  let first: Awaited<ReturnType<typeof runStudy>>;

  beforeAll(async () => {
    first = await runStudy(options(out));
  });

  test('runs every point of the grid and writes study.json, study.md and the charts', () => {
    const study = first.study!;
    expect(study.points.map((p) => p.label)).toEqual([
      'routing.mode=dense model.num_experts=2',
      'routing.mode=dense model.num_experts=4',
      'routing.mode=topk model.num_experts=2',
      'routing.mode=topk model.num_experts=4',
    ]);
    expect(first.ran).toHaveLength(4);
    for (const point of study.points as (PointResult & { status: string })[]) {
      expect(point.status).toBe('done');
      for (const figure of [point.dense.loss, point.dense.perplexity, point.sparse.loss, point.sparse.perplexity, point.cost.tpp, point.cost.training_flops]) {
        expect(Number.isFinite(figure)).toBe(true);
      }
      // 12 steps from a byte-uniform start (ln 257 = 5.55): the loss has moved, and the plan stays near the dense model
      expect(point.dense.loss).toBeLessThan(5.5);
      expect(Math.abs(point.sparse.loss - point.dense.loss)).toBeLessThan(1);
      for (const kind of ['memorization', 'memorization_control', 'addition', 'modular', 'binding', 'reasoning']) {
        for (const mode of ['plan', 'dense'] as const) {
          const score = point.probes![mode][kind];
          expect(score.items).toBeGreaterThan(0);
          expect(score.accuracy).toBeGreaterThanOrEqual(0);
          expect(score.accuracy).toBeLessThanOrEqual(1);
        }
      }
      expect(point.probes!.plan.memorization.items).toBe(8);
      expect(point.probes!.plan.reasoning.items).toBe(8);
    }
    // Equal total expert width: total parameters equal across expert counts up to the router (E·d per layer).
    const [dense2, dense4, topk2] = study.points as PointResult[];
    expect(dense4.cost.total_params - dense2.cost.total_params).toBe(2 * 32);
    // DS-MoE is converted with the converter's default; SMoE is served top-k at its training k.
    expect(dense2.plan.strategy).toBe('threshold-topk');
    expect(topk2.plan).toMatchObject({ strategy: 'topk', k: [1] });
    expect(topk2.plan.active_params_per_token).toBe(topk2.cost.active_params);
    // SMoE trains top-1: fewer training FLOPs than DS-MoE's dense training of the same shape.
    expect(topk2.cost.training_flops).toBeLessThan(dense2.cost.training_flops);
    const markdown = fs.readFileSync(path.join(out, 'study.md'), 'utf8');
    expect(markdown).toContain('4 of 4 points done');
    expect(markdown).toContain('routing.mode=topk model.num_experts=4');
    for (const figure of ['loss_vs_tpp.svg', 'loss_vs_active_flops.svg', 'probes_vs_tpp.svg', 'probes_vs_active_flops.svg']) {
      expect(fs.readFileSync(path.join(out, figure), 'utf8')).toMatch(/^<svg/);
      expect(markdown).toContain(`](${figure})`);
    }
    const log = fs.readFileSync(path.join(out, 'study_log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(log.filter((e) => e.event === 'point')).toHaveLength(4);
    expect(log[log.length - 1]).toMatchObject({ event: 'done', done: 4, points: 4 });
  });

  test('a rerun without --resume refuses the folder; with --resume it skips every finished point', async () => {
    await expect(runStudy(options(out))).rejects.toThrow(/already holds a study; pass --resume/);
    const again = await runStudy(options(out, { resume: true }));
    expect(again.ran).toEqual([]);
    expect(again.skipped).toHaveLength(4);
    expect(again.study!.points.map((p) => p.dense!.loss)).toEqual(first.study!.points.map((p) => p.dense!.loss));
  });

  test('an interrupted point resumes where it stopped and ends as the uninterrupted run did', async () => {
    const resumed = tempDir('study-resume');
    const stopped = await runStudy(options(resumed, { stopAfterSteps: 6 }));
    expect(stopped.interrupted).toBe(true);
    expect(stopped.ran).toHaveLength(1);
    const [id] = stopped.ran;
    const pointDir = path.join(resumed, 'points', id);
    expect(JSON.parse(fs.readFileSync(path.join(pointDir, 'dense', 'trainer_state.json'), 'utf8')).step).toBe(6);
    expect(fs.existsSync(path.join(pointDir, 'result.json'))).toBe(false);
    expect(stopped.study!.points.every((p) => p.status === 'pending')).toBe(true);

    // The same point again (one point only, as a --jobs child runs it, to keep the test short): resumed at step 6.
    const finished = await runStudy(options(resumed, { resume: true, onlyPoint: id }));
    expect(finished.interrupted).toBe(false);
    expect(finished.ran).toEqual([id]);
    const log = fs.readFileSync(path.join(resumed, 'study_log.jsonl'), 'utf8');
    expect(log).toContain('"resume":true,"from_step":6');
    const result = JSON.parse(fs.readFileSync(path.join(pointDir, 'result.json'), 'utf8')) as PointResult;
    expect(result.dense.loss).toBeCloseTo(first.study!.points[0].dense!.loss, 5);
    expect(result.sparse.loss).toBeCloseTo(first.study!.points[0].sparse!.loss, 5);
  });
});
