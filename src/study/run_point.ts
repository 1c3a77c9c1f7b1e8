/**
 * One study point, through the functions the commands call: train (resuming an interrupted run) → the held-out
 * loss the trainer logged at its last step → convert with the converter's defaults (threshold-topk, ε, f32,
 * calibrated on the recipe's validation split; an SMoE point is served top-k at its training k) → sparse eval on the same held-out windows → probes on the served
 * plan and on the dense model (the same plan with every expert). Each stage whose output is complete is skipped, so
 * an interrupted point resumes where it stopped; result.json, written last, marks the point finished.
 *
 * points/<id>/recipe.yaml   the point's recipe (eval and convert find it through the checkpoint's config.json)
 * points/<id>/dense/        the trained checkpoint
 * points/<id>/sparse/       the converted plan
 * points/<id>/result.json   everything study.json lists for the point
 */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { UserError } from '../errors';
import { writeFileAtomic, writeJsonAtomic } from '../checkpoint/atomic';
import { loadCorpusText, loadTokenizer, prepareData, heldOutSplit } from '../data';
import { loadRecipe } from '../recipe';
import { train } from '../train/trainer';
import { readAnyDenseCheckpoint } from '../interop/read_any_dense';
import { convertCheckpoint } from '../convert/convert_checkpoint';
import { evaluateSparse } from '../runtime/eval';
import { SparseModel } from '../runtime/model';
import { readPlan } from '../plan/read_plan';
import { layerOps } from '../plan/plan_format';
import type { StudySpec } from './study_file';
import type { StudyPoint } from './study_points';
import type { RecipeCost } from './study_cost';
import { heldOutProblems, memorizationItems } from './probes';
import { scoreItems, type ProbeScore } from './probe_scoring';

export interface QualityFigures {
  loss: number;
  perplexity: number;
  bits_per_byte: number;
  tokens: number;
}

export interface PointResult {
  id: string;
  index: number;
  label: string;
  values: Record<string, unknown>;
  recipe_file: string;
  routing: string; // dense (DS-MoE) or topk (SMoE)
  cost: RecipeCost;
  constraint?: StudyPoint['constraint'];
  train: { steps: number; wall_s: number };
  dense: QualityFigures; // the trained model, all experts (the trainer's last held-out evaluation)
  plan: { strategy: string; k: number[]; active_params_per_token: number; active_flops_per_token: number; mean_experts: number[] };
  sparse: QualityFigures; // the converted plan on the native runtime, same held-out windows
  probes?: {
    plan: Record<string, ProbeScore>; // kinds: memorization, memorization_control, each task, reasoning (all tasks)
    dense: Record<string, ProbeScore>;
  };
}

export interface PointOutcome {
  result: PointResult | null; // null: interrupted (Ctrl-C) during training
}

export interface RunPointOptions {
  spec: StudySpec;
  point: StudyPoint;
  pointDir: string;
  backendName: string;
  threads?: number;
  verbose: boolean;
  log: (event: Record<string, unknown>) => void; // one JSONL record
  note: (line: string) => void; // a progress line
  /** training segment limit (tests interrupt a point this way) */
  stopAfterSteps?: number;
}

export function resultFile(pointDir: string): string {
  return path.join(pointDir, 'result.json');
}

/** The trainer's held-out evaluation at its last step, from eval_log.jsonl. */
function finalEvaluation(denseDir: string, maxSteps: number): QualityFigures | null {
  const file = path.join(denseDir, 'eval_log.jsonl');
  if (!fs.existsSync(file)) return null;
  for (const line of fs.readFileSync(file, 'utf8').split('\n').reverse()) {
    if (!line.trim()) continue;
    try {
      const record = JSON.parse(line) as { step: number } & QualityFigures;
      if (record.step === maxSteps) return { loss: record.loss, perplexity: record.perplexity, bits_per_byte: record.bits_per_byte, tokens: record.tokens };
    } catch {
      continue;
    }
  }
  return null;
}

function trainedSteps(denseDir: string): number | null {
  const file = path.join(denseDir, 'trainer_state.json');
  if (!fs.existsSync(file) || !fs.existsSync(path.join(denseDir, 'model.safetensors'))) return null;
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { step: number }).step;
  } catch {
    return null;
  }
}

export async function runPoint(options: RunPointOptions): Promise<PointOutcome> {
  const { spec, point, pointDir, log, note } = options;
  const recipeFile = path.join(pointDir, 'recipe.yaml');
  const denseDir = path.join(pointDir, 'dense');
  const sparseDir = path.join(pointDir, 'sparse');
  fs.mkdirSync(pointDir, { recursive: true });
  const recipeText = `# ${spec.name} point ${point.index}: ${point.label} (written by dsmoe study from ${spec.file})\n${YAML.stringify(point.document)}`;
  if (!fs.existsSync(recipeFile) || fs.readFileSync(recipeFile, 'utf8') !== recipeText) writeFileAtomic(recipeFile, recipeText);
  const recipe = loadRecipe(recipeFile);
  const maxSteps = recipe.train.max_steps;

  // --- train (or resume, or skip) --------------------------------------------------------------------------
  const steps = trainedSteps(denseDir);
  let trainSeconds = 0;
  if (steps === null || steps < maxSteps || !finalEvaluation(denseDir, maxSteps)) {
    const resume = steps !== null && steps < maxSteps;
    const savedTokenizer = resume ? loadTokenizer(denseDir) : undefined;
    const { tokenizer, dataset } = prepareData(recipe, { tokenizer: savedTokenizer });
    note(`${point.id} (${point.label}): ${resume ? `resuming training at step ${steps}/${maxSteps}` : `training ${maxSteps} steps`}`);
    log({ event: 'train', point: point.id, resume, from_step: steps ?? 0, max_steps: maxSteps });
    const outcome = await train({ recipe, tokenizer, dataset, outDir: denseDir, resume, backendName: options.backendName, verbose: options.verbose, stopAfterSteps: options.stopAfterSteps });
    trainSeconds = outcome.wallSeconds;
    if (outcome.interrupted || outcome.step < maxSteps) {
      log({ event: 'interrupted', point: point.id, step: outcome.step, max_steps: maxSteps });
      return { result: null };
    }
  }
  const dense = finalEvaluation(denseDir, maxSteps);
  if (!dense) throw new UserError(`${denseDir}/eval_log.jsonl: no held-out evaluation at step ${maxSteps}; delete ${denseDir} to retrain the point`);

  // --- convert (the converter's defaults) -----------------------------------------------------------------
  // DS-MoE: the converter's default (threshold-topk); SMoE is served with the top-k it was trained with (design §7).
  const smoe = recipe.routing.mode === 'topk';
  if (!fs.existsSync(path.join(sparseDir, 'plan.json'))) {
    note(`${point.id}: converting (${smoe ? `topk k=${recipe.routing.top_k}` : `threshold-topk, ε ${spec.convert.epsilon}`}, ${spec.convert.calib_tokens} calibration tokens)`);
    const checkpoint = readAnyDenseCheckpoint(denseDir);
    const split = heldOutSplit(denseDir, {});
    const context = recipe.data.seq_len;
    const calibWindows = split.calibrationWindows(context, Math.max(context, spec.convert.calib_tokens));
    await convertCheckpoint(checkpoint, {
      outDir: sparseDir,
      strategy: smoe ? 'topk' : 'threshold-topk',
      ...(smoe ? { k: recipe.routing.top_k } : {}),
      epsilon: spec.convert.epsilon,
      dtype: 'f32',
      calibWindows,
      calibSource: split.source,
      renormalize: false,
      threads: options.threads,
      log: options.verbose ? (line) => note(`  convert: ${line}`) : undefined,
    });
    log({ event: 'convert', point: point.id });
  }
  const { plan } = readPlan(sparseDir);

  // --- sparse eval and probes ----------------------------------------------------------------------------
  const sparseEval = await evaluateSparse(sparseDir, { threads: options.threads });
  const sparse = { loss: sparseEval.loss, perplexity: sparseEval.perplexity, bits_per_byte: sparseEval.bits_per_byte, tokens: sparseEval.tokens };
  let probes: PointResult['probes'];
  if (spec.probes) {
    const text = loadCorpusText(recipe.data);
    const verses = memorizationItems(text, recipe.seed, recipe.data.validation_fraction, spec.probes);
    const items = [...verses.memorization, ...verses.control, ...heldOutProblems(spec.probes)];
    const tokenizer = loadTokenizer(denseDir);
    const model = SparseModel.load(sparseDir, { threads: options.threads });
    try {
      const withReasoning = (scores: Record<string, ProbeScore>) => {
        const tasks = spec.probes!.tasks.map((task) => scores[task]).filter(Boolean);
        const correct = tasks.reduce((n, s) => n + s.correct, 0);
        const total = tasks.reduce((n, s) => n + s.items, 0);
        const { all: _all, ...rest } = scores;
        return { ...rest, reasoning: { items: total, correct, accuracy: total ? correct / total : 0 } };
      };
      model.setMode('plan');
      const planScores = withReasoning(await scoreItems(model, tokenizer, items));
      model.setMode('dense');
      const denseScores = withReasoning(await scoreItems(model, tokenizer, items));
      probes = { plan: planScores, dense: denseScores };
    } finally {
      await model.dispose();
    }
  }

  const state = JSON.parse(fs.readFileSync(path.join(denseDir, 'trainer_state.json'), 'utf8')) as { elapsed_s: number };
  const result: PointResult = {
    id: point.id,
    index: point.index,
    label: point.label,
    values: point.values,
    recipe_file: recipeFile,
    routing: recipe.routing.mode,
    cost: point.cost,
    ...(point.constraint ? { constraint: point.constraint } : {}),
    train: { steps: maxSteps, wall_s: state.elapsed_s ?? trainSeconds },
    dense,
    plan: {
      strategy: plan.strategy.name,
      k: plan.layers.map((layer) => layerOps(layer).select.k ?? 0),
      active_params_per_token: plan.cost.active_params_per_token,
      active_flops_per_token: plan.cost.active_flops_per_token,
      mean_experts: sparseEval.routing,
    },
    sparse,
    ...(probes ? { probes } : {}),
  };
  writeJsonAtomic(resultFile(pointDir), result);
  log({ event: 'point', point: point.id, dense_loss: dense.loss, sparse_loss: sparse.loss, reasoning: probes?.plan.reasoning?.accuracy, memorization: probes?.plan.memorization?.accuracy });
  return { result };
}
