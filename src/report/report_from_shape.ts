import * as path from 'path';
import type { PlanDtype } from '../plan/plan_format';
import type { ReportRuntime } from './report_runtime';
import type { ReportJson } from './report_json';
import { runReport } from './run_report';
import { prepareRandomPlan } from './random_plan_report';
import type { SpeedSettings } from './report_from_folders';

export interface ShapeReportRequest extends SpeedSettings {
  shape: string;
  layers?: number;
  dtype: PlanDtype;
  k?: number;
  seed: number;
  planDir?: string;
}

/** Speed at a realistic shape without training: a random-init plan, timed dense vs sparse; no quality figures. */
export async function reportFromShape(runtime: ReportRuntime, request: ShapeReportRequest): Promise<ReportJson> {
  const planDir = request.planDir ?? path.join(request.outDir, 'random-plan');
  process.stderr.write(`report: writing or reusing the random-init plan in ${planDir}\n`);
  const prepared = prepareRandomPlan({ shape: request.shape, layers: request.layers, dtype: request.dtype, k: request.k, seed: request.seed, planDir });
  const plan = prepared.loaded.plan;
  const promptLen = request.promptLen ?? 16;
  const decodeSteps = request.decodeSteps ?? 8;
  return runReport(runtime, {
    kind: 'random-init',
    sparseDir: planDir,
    denseDir: null,
    shapeName: prepared.name,
    layersNote: prepared.layersNote,
    plan,
    outDir: request.outDir,
    threads: request.threads,
    throughput: { batches: request.batches, promptLen, decodeSteps, repeats: request.repeats, seed: 1 },
    quality: null,
    sweep: false,
    epsilons: [],
    referenceCheck: null,
    peer: { enabled: request.peer, batches: [1, 64], dtypes: ['f32', 'bf16'], repeats: request.peerRepeats, timeoutMs: 300_000 },
    llamaCpp: { enabled: request.llamaCpp ?? false, repeats: request.llamaCppRepeats ?? 3 },
    notes: [
      `Random-init plan (seed ${request.seed}, N(0, 0.02) weights, ${plan.dtype}, top-${prepared.k} of ${plan.config.num_experts} experts${prepared.reused ? ', reused from an earlier run' : ''}): speed only, no quality figures.`,
      'Random routers spread tokens almost evenly over experts, as a trained DS-MoE router with the MI loss does; the roofline assumes that balanced load.',
    ],
    progress: request.progress,
  });
}
