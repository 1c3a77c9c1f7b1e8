import * as tf from '@tensorflow/tfjs';
import { MoEModel, RoutingOptions } from '../model/model';
import { ParamMap } from '../model/params';
import { AdamW, clipScale } from './adamw';

export interface Batch {
  inputs: Int32Array; // [B·T]
  targets: Int32Array; // [B·T]
}

export interface StepOutcome {
  loss: number; // lm + α·aux, mean over the micro-batches
  lm: number;
  aux: number;
  z: number; // router z-loss (0 when its weight is 0)
  attentionAux: number | null; // MI loss of the attention routers (MoA), mean over the micro-batches; null without MoA
  /** per micro-batch, per layer the attention routers' probabilities [B·T, A] (MoA; empty otherwise), for routing statistics */
  attentionRouterProbs: Float32Array[][];
  gradNorm: number; // global gradient norm before clipping
}

/**
 * One optimizer step: forward and backward over each micro-batch, gradients summed then averaged, clipped by
 * global norm, then one AdamW update. Shared by the trainer and the benchmark so both time the same work.
 */
export function trainStep(
  model: MoEModel,
  params: ParamMap,
  optimizer: AdamW,
  microBatches: Batch[],
  batchSize: number,
  seqLen: number,
  routing: RoutingOptions,
  lr: number,
  gradClip: number,
): StepOutcome {
  const variables = [...params.values()];
  const nameOf = new Map([...params].map(([name, v]) => [v.name, name]));
  const accum = microBatches.length;
  let gradSum: Map<string, tf.Tensor> | null = null;
  const outcome: StepOutcome = { loss: 0, lm: 0, aux: 0, z: 0, attentionAux: null, attentionRouterProbs: [], gradNorm: 0 };
  for (const batch of microBatches) {
    let lm: tf.Tensor | null = null;
    let aux: tf.Tensor | null = null;
    let z: tf.Tensor | null = null;
    let attentionAux: tf.Tensor | null = null;
    let attentionProbs: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const terms = model.loss(batch.inputs, batch.targets, batchSize, seqLen, routing);
      lm = tf.keep(terms.lm);
      aux = tf.keep(terms.aux);
      z = tf.keep(terms.z);
      if (terms.attentionAux) attentionAux = tf.keep(terms.attentionAux);
      attentionProbs = terms.attentionRouterProbs.map((p) => tf.keep(p));
      return terms.total;
    }, variables);
    const kept = [value, lm as unknown as tf.Tensor, aux as unknown as tf.Tensor, z as unknown as tf.Tensor];
    const [total, lmValue, auxValue, zValue] = kept.map((t) => t.dataSync()[0]);
    outcome.loss += total / accum;
    outcome.lm += lmValue / accum;
    outcome.aux += auxValue / accum;
    outcome.z += zValue / accum;
    if (attentionAux) outcome.attentionAux = (outcome.attentionAux ?? 0) + (attentionAux as tf.Tensor).dataSync()[0] / accum;
    if (attentionProbs.length) outcome.attentionRouterProbs.push(attentionProbs.map((p) => Float32Array.from(p.dataSync() as Float32Array)));
    tf.dispose([...kept, ...(attentionAux ? [attentionAux as tf.Tensor] : []), ...attentionProbs]);
    if (!gradSum) {
      gradSum = new Map(Object.entries(grads).map(([varName, g]) => [nameOf.get(varName) as string, g]));
    } else {
      for (const [varName, g] of Object.entries(grads)) {
        const name = nameOf.get(varName) as string;
        const previous = gradSum.get(name) as tf.Tensor;
        gradSum.set(name, tf.add(previous, g));
        tf.dispose([previous, g]);
      }
    }
  }
  const grads = gradSum as Map<string, tf.Tensor>;
  if (accum > 1) {
    for (const [name, g] of grads) {
      grads.set(name, tf.div(g, accum));
      g.dispose();
    }
  }
  if (Number.isFinite(outcome.loss)) {
    const { norm, scale } = clipScale(grads, gradClip);
    outcome.gradNorm = norm;
    optimizer.apply(params, grads, lr, scale);
  }
  tf.dispose([...grads.values()]);
  return outcome;
}
