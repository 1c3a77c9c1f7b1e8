import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors';
import { DenseCheckpointInput, saveDenseCheckpoint, TrainerState } from '../checkpoint/dense';
import { readDenseCheckpoint } from '../checkpoint/read_dense';
import { fromCheckpointTensors, toCheckpointTensors } from '../model/checkpoint_layout';
import { attentionExperts, ModelConfig, parameterCounts } from '../model/config';
import { checkMemory, trainingMemory } from '../model/memory_estimate';
import { MoEModel, RoutingOptions } from '../model/model';
import { disposeParams, initParams, ParamMap, paramsFromArrays, paramSpecs, paramsToArrays } from '../model/params';
import { Recipe, recipeHash } from '../recipe';
import { AdamW } from './adamw';
import { trainStep } from './step';
import { TrainingDataset, TrainingTokenizer } from './data_source';
import { EvalResult, evaluateWindows, TokenWindows } from './evaluate';
import { formatDuration, TrainingProgress } from './progress';
import { formatRoutingStats, RoutingStatsAccumulator } from './routing_stats';
import { learningRate } from './schedule';

export interface TrainOptions {
  recipe: Recipe;
  tokenizer: TrainingTokenizer;
  dataset: TrainingDataset;
  outDir: string;
  resume: boolean;
  /** total optimizer steps (and length of the cosine schedule); default: the recipe's, or the resumed run's */
  maxSteps?: number;
  /** end this run segment after this many more steps, with a checkpoint, as an interruption would (0 on a fresh run: the step-0 weights) */
  stopAfterSteps?: number;
  backendName: string;
  /** progress bar and info lines on stderr (default true) */
  verbose?: boolean;
}

export interface TrainResult {
  step: number; // optimizer steps completed
  maxSteps: number;
  interrupted: boolean;
  finalEval: EvalResult | null; // held-out evaluation at the end of a finished run
  firstLoss: number | null; // loss of the first step trained in this segment
  lastLoss: number | null;
  wallSeconds: number; // this segment
  outDir: string;
}

export const logFiles = { train: 'train_log.jsonl', eval: 'eval_log.jsonl' };

/** Training routing options from the recipe. */
export function routingOptions(recipe: Recipe): RoutingOptions {
  return {
    mode: recipe.routing.mode,
    miAlpha: recipe.routing.mi_alpha,
    topK: recipe.routing.top_k,
    balanceAlpha: recipe.routing.balance_alpha,
    softmaxAfterTopK: recipe.routing.softmax === 'after_topk',
    zLossAlpha: recipe.routing.z_loss_alpha ?? 0,
    ...(recipe.routing.mi_alpha_attention !== undefined ? { miAlphaAttention: recipe.routing.mi_alpha_attention } : {}),
  };
}

/** The recipe's model shape; its vocab_size (filled from the tokenizer) is at least the tokenizer's. */
export function modelConfigFor(recipe: Recipe, tokenizer: TrainingTokenizer): ModelConfig {
  if (tokenizer.vocabSize > recipe.model.vocab_size) {
    throw new UserError(`tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${recipe.model.vocab_size}`);
  }
  return { ...recipe.model };
}

/**
 * The "dsmoe" block of a checkpoint's config.json: the recipe it was trained from and how it routes. A model trained
 * with softmax after top-k also says so where every reader looks, Qwen2-MoE's `norm_topk_prob: true` (renormalised
 * top-k weights are that softmax), so the converter writes `renormalize: true` selects and exports keep the rule.
 */
export function checkpointConfigExtra(recipe: Recipe, steps: number): Record<string, unknown> {
  const routing = routingOptions(recipe);
  return {
    ...(routing.softmaxAfterTopK ? { norm_topk_prob: true } : {}),
    dsmoe: {
      recipe: recipe.name,
      recipe_file: recipe.file,
      recipe_hash: recipeHash(recipe),
      routing: routing.mode,
      mi_alpha: routing.miAlpha,
      top_k: routing.topK,
      balance_alpha: routing.balanceAlpha,
      // Left out at their defaults, so the block of a run without them is as before.
      ...(recipe.routing.softmax ? { softmax: recipe.routing.softmax } : {}),
      ...(recipe.routing.z_loss_alpha ? { z_loss_alpha: recipe.routing.z_loss_alpha } : {}),
      ...(recipe.granularity ? { granularity: recipe.granularity } : {}),
      ...(routing.miAlphaAttention !== undefined ? { mi_alpha_attention: routing.miAlphaAttention } : {}),
      seq_len: recipe.data.seq_len,
      tokenizer: recipe.tokenizer.type,
      steps,
    },
  };
}

/** Keeps log lines up to `step` (a resumed run rewrites what came after its checkpoint). */
function truncateLog(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const kept = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step: number }).step <= step;
      } catch {
        return false;
      }
    });
  fs.writeFileSync(file, kept.map((l) => l + '\n').join(''));
}

/**
 * Trains (or resumes) a run and writes the dense checkpoint folder. Batches are a pure function of
 * (seed, batch index), with batch index = step · grad_accum + micro-batch, and training draws no other random
 * numbers, so a resumed run ends with the same weights as an uninterrupted one.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const { recipe, tokenizer, dataset, outDir } = options;
  const verbose = options.verbose ?? true;
  const info = (line: string) => verbose && process.stderr.write(line + '\n');
  const t = recipe.train;
  const config = modelConfigFor(recipe, tokenizer);
  const hash = recipeHash(recipe);
  const routing = routingOptions(recipe);
  const seqLen = recipe.data.seq_len;
  const trainLogFile = path.join(outDir, logFiles.train);
  // Before any tensor exists: a shape that cannot fit ends here with one line, not deep inside tfjs.
  checkMemory(`training ${recipe.file}`, trainingMemory(config, { batchSize: t.batch_size, seqLen }));
  const evalLogFile = path.join(outDir, logFiles.eval);

  // --- state: fresh or resumed -------------------------------------------------------------------------------
  let params: ParamMap;
  const decayed = new Set(paramSpecs(config).filter((s) => s.decay).map((s) => s.name));
  const optimizerSettings = { beta1: t.beta1, beta2: t.beta2, eps: t.adam_eps, weightDecay: t.weight_decay };
  let optimizer: AdamW;
  let startStep = 0;
  let maxSteps = options.maxSteps ?? t.max_steps;
  let elapsedBefore = 0;
  let tokensSeen = 0;
  if (options.resume) {
    if (!fs.existsSync(path.join(outDir, 'trainer_state.json'))) {
      throw new UserError(`${outDir}: no checkpoint to resume (trainer_state.json is missing)`);
    }
    const checkpoint = readDenseCheckpoint(outDir, { forResume: true });
    const state = checkpoint.trainerState as TrainerState;
    if (state.recipe_hash !== hash) {
      throw new UserError(
        `${outDir}: checkpoint was trained with a different recipe (hash ${state.recipe_hash.slice(0, 12)}…, ` +
          `${recipe.file} has ${hash.slice(0, 12)}…); resume with the original recipe or train into a new --out`,
      );
    }
    const differing = (Object.keys(config) as (keyof ModelConfig)[]).find((key) => checkpoint.config[key] !== config[key]);
    if (differing) {
      throw new UserError(
        `${outDir}/config.json: ${differing} is ${JSON.stringify(checkpoint.config[differing])}, the recipe says ${JSON.stringify(config[differing])}`,
      );
    }
    params = paramsFromArrays(config, fromCheckpointTensors(config, checkpoint.get));
    optimizer = new AdamW(params, decayed, optimizerSettings);
    const moments = checkpoint.optimizer as NonNullable<typeof checkpoint.optimizer>;
    optimizer.restore(
      fromCheckpointTensors(config, (n) => moments.expAvg.get(n) as Float32Array),
      fromCheckpointTensors(config, (n) => moments.expAvgSq.get(n) as Float32Array),
      state.step,
    );
    startStep = state.step;
    maxSteps = options.maxSteps ?? state.max_steps;
    elapsedBefore = state.elapsed_s;
    tokensSeen = state.tokens_seen;
    truncateLog(trainLogFile, startStep);
    truncateLog(evalLogFile, startStep);
    info(`resuming ${outDir} at step ${startStep}/${maxSteps}`);
  } else {
    params = initParams(config, recipe.seed);
    optimizer = new AdamW(params, decayed, optimizerSettings);
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(trainLogFile, '');
    fs.writeFileSync(evalLogFile, '');
  }
  const model = new MoEModel(config, params);
  const counts = parameterCounts(config);
  const A = attentionExperts(config); // MoA's attention experts per layer (0: plain attention)
  const tokensPerStep = t.batch_size * t.grad_accum * seqLen;
  info(
    `${recipe.name}: ${(counts.total / 1e6).toFixed(2)} M parameters, ${config.num_experts} experts × ${config.num_hidden_layers} layers` +
      `${recipe.granularity ? ` (granularity ${recipe.granularity})` : ''}, ` +
      (A > 0 ? `${A} attention experts of ${config.heads_per_attention_expert} heads, ` : '') +
      `routing ${routing.mode}` +
      `${routing.mode === 'topk' ? ` top-${routing.topK}${routing.softmaxAfterTopK ? ', softmax after top-k' : ''}` : ''}` +
      `${routing.zLossAlpha ? `, z-loss ${routing.zLossAlpha}` : ''}, ${tokensPerStep} tokens/step, ${maxSteps} steps, backend ${options.backendName}`,
  );

  // --- helpers ------------------------------------------------------------------------------------------------
  const validation: TokenWindows = dataset.validationWindows(t.eval_tokens, seqLen);
  const evaluate = (): EvalResult => evaluateWindows(model, validation, dataset.validationBytesPerToken, t.batch_size);
  const segmentStart = performance.now();
  let step = startStep;
  let lastLr = learningRate(Math.max(0, step - 1), { lr: t.lr, minLr: t.min_lr, warmup: t.warmup_steps, maxSteps });
  const saveCheckpoint = () => {
    const toTensors = (map: Map<string, tf.Variable>) => toCheckpointTensors(config, paramsToArrays(map));
    const input: DenseCheckpointInput = {
      config,
      tensors: toTensors(params),
      tokenizer,
      optimizerState: { expAvg: toTensors(optimizer.expAvg), expAvgSq: toTensors(optimizer.expAvgSq) },
      trainerState: {
        step,
        max_steps: maxSteps,
        recipe_hash: hash,
        recipe_name: recipe.name,
        seed: recipe.seed,
        tokens_seen: tokensSeen,
        elapsed_s: elapsedBefore + (performance.now() - segmentStart) / 1000,
        lr: lastLr,
        rng_state: { seed: recipe.seed, batch_index: step * t.grad_accum },
        backend: options.backendName,
      },
      configExtra: checkpointConfigExtra(recipe, step),
    };
    saveDenseCheckpoint(outDir, input);
  };

  // --- Ctrl-C: finish the current step, save, exit ------------------------------------------------------------
  const progress = new TrainingProgress(maxSteps, startStep, t.log_every, verbose);
  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) process.exit(130); // second Ctrl-C: give up on saving
    stopRequested = true;
    progress.note('interrupt: saving a checkpoint after this step (Ctrl-C again to quit without saving)');
  };
  process.on('SIGINT', onSigint);

  let firstLoss: number | null = null;
  let lastLoss: number | null = null;
  let interrupted = false;
  let finalEval: EvalResult | null = null;
  // MoA: the attention routers' MI loss and routing statistics over each logged interval's training batches.
  const newInterval = () => ({
    loss: 0,
    lm: 0,
    aux: 0,
    z: 0,
    attentionAux: 0,
    attentionStats: A > 0 ? new RoutingStatsAccumulator(config.num_hidden_layers, A) : null,
    steps: 0,
    start: performance.now(),
  });
  let interval = newInterval();
  const stopAt = options.stopAfterSteps !== undefined ? Math.min(maxSteps, startStep + options.stopAfterSteps) : maxSteps;
  try {
    while (step < stopAt) {
      const lr = learningRate(step, { lr: t.lr, minLr: t.min_lr, warmup: t.warmup_steps, maxSteps });
      const microBatches = Array.from({ length: t.grad_accum }, (_, micro) =>
        dataset.trainBatch(step * t.grad_accum + micro, t.batch_size, seqLen),
      );
      const outcome = trainStep(model, params, optimizer, microBatches, t.batch_size, seqLen, routing, lr, t.grad_clip);
      const stepLoss = outcome.loss;
      if (!Number.isFinite(stepLoss)) throw new UserError(`loss became ${stepLoss} at step ${step + 1}; lower the learning rate`);
      const gradNorm = outcome.gradNorm;
      step += 1;
      lastLr = lr;
      tokensSeen += tokensPerStep;
      firstLoss ??= stepLoss;
      lastLoss = stepLoss;
      interval.loss += stepLoss;
      interval.lm += outcome.lm;
      interval.aux += outcome.aux;
      interval.z += outcome.z;
      interval.attentionAux += outcome.attentionAux ?? 0;
      for (const probs of outcome.attentionRouterProbs) interval.attentionStats?.add(probs);
      interval.steps += 1;

      // --- log, evaluate, checkpoint
      const segmentSeconds = (performance.now() - segmentStart) / 1000;
      const secondsPerStep = segmentSeconds / (step - startStep);
      if (step % t.log_every === 0 || step === startStep + 1 || step === maxSteps) {
        const seconds = (performance.now() - interval.start) / 1000;
        const record = {
          step,
          loss: interval.loss / interval.steps,
          lm_loss: interval.lm / interval.steps,
          [routing.mode === 'topk' ? 'balance_loss' : 'mi_loss']: interval.aux / interval.steps,
          ...(routing.zLossAlpha ? { z_loss: interval.z / interval.steps } : {}),
          ...(interval.attentionStats
            ? { mi_loss_attention: interval.attentionAux / interval.steps, attention_routing: interval.attentionStats.result() }
            : {}),
          lr,
          grad_norm: gradNorm,
          tokens_per_s: (interval.steps * tokensPerStep) / seconds,
          elapsed_s: elapsedBefore + segmentSeconds,
        };
        fs.appendFileSync(trainLogFile, JSON.stringify(record) + '\n');
        progress.update(step, record.loss, record.tokens_per_s, (maxSteps - step) * secondsPerStep);
        interval = newInterval();
      }
      if (step % t.eval_every === 0 || step === maxSteps) {
        const result = evaluate();
        fs.appendFileSync(evalLogFile, JSON.stringify({ step, ...result }) + '\n');
        progress.note(
          `eval @ ${step}: loss ${result.loss.toFixed(4)}, perplexity ${result.perplexity.toFixed(2)}, ` +
            `${result.bits_per_byte.toFixed(3)} bits/byte`,
        );
        if (step === maxSteps) finalEval = result;
      }
      if (step % t.checkpoint_every === 0 || step === maxSteps || step === stopAt) saveCheckpoint();
      // Let signal handlers run between steps.
      await new Promise((resolve) => setImmediate(resolve));
      if (stopRequested) {
        if (step % t.checkpoint_every !== 0 && step !== maxSteps) saveCheckpoint();
        interrupted = true;
        break;
      }
    }
    // A fresh run told to stop after 0 steps writes its initial weights (step 0), e.g. to start another engine from them.
    if (step === startStep && stopAt === startStep && !options.resume && startStep < maxSteps) saveCheckpoint();
    if (step === startStep && step >= maxSteps) info(`${outDir}: already trained for ${maxSteps} steps; nothing to do`);
  } finally {
    process.removeListener('SIGINT', onSigint);
    progress.stop();
  }
  const wallSeconds = (performance.now() - segmentStart) / 1000;
  if (interrupted) info(`interrupted: checkpoint saved at step ${step} in ${outDir}; continue with --resume`);
  else info(`trained to step ${step}/${maxSteps} in ${formatDuration(wallSeconds)}; checkpoint in ${outDir}`);
  if (finalEval && verbose) for (const line of formatRoutingStats(finalEval.layers)) info(line);
  if (finalEval?.attention_layers && verbose) for (const line of formatRoutingStats(finalEval.attention_layers, 'attention layer')) info(line);
  model.dispose();
  optimizer.dispose();
  disposeParams(params);
  return { step, maxSteps, interrupted, finalEval, firstLoss, lastLoss, wallSeconds, outDir };
}
