import * as tf from '@tensorflow/tfjs';
import { ParamMap } from '../model/params';

export interface AdamWSettings {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * AdamW (Loshchilov & Hutter) with decoupled weight decay, as torch.optim.AdamW:
 * m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  θ ← θ − lr·( m̂/(√v̂ + ε) + λ·θ ), m̂ = m/(1−β1^t), v̂ = v/(1−β2^t).
 * Decay applies only to the names in `decayed` (matrices; never norms or biases). Moments are tfjs variables,
 * readable and restorable for checkpoints.
 */
export class AdamW {
  readonly expAvg = new Map<string, tf.Variable>();
  readonly expAvgSq = new Map<string, tf.Variable>();
  /** completed updates (t of the bias correction is stepsDone + 1) */
  stepsDone = 0;

  constructor(
    params: ParamMap,
    private readonly decayed: Set<string>,
    private readonly settings: AdamWSettings,
  ) {
    for (const [name, param] of params) {
      this.expAvg.set(name, tf.variable(tf.zerosLike(param), false));
      this.expAvgSq.set(name, tf.variable(tf.zerosLike(param), false));
    }
  }

  /** One update of every parameter from its (already averaged and clipped) gradient. */
  apply(params: ParamMap, grads: Map<string, tf.Tensor>, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.settings;
    const t = this.stepsDone + 1;
    const correction1 = 1 - Math.pow(beta1, t);
    const correction2 = 1 - Math.pow(beta2, t);
    tf.tidy(() => {
      for (const [name, param] of params) {
        const grad = grads.get(name);
        if (!grad) throw new Error(`no gradient for parameter ${name}`);
        const m = this.expAvg.get(name) as tf.Variable;
        const v = this.expAvgSq.get(name) as tf.Variable;
        const mNew = tf.add(tf.mul(m, beta1), tf.mul(grad, 1 - beta1));
        const vNew = tf.add(tf.mul(v, beta2), tf.mul(tf.square(grad), 1 - beta2));
        const update = tf.div(tf.div(mNew, correction1), tf.add(tf.sqrt(tf.div(vNew, correction2)), eps));
        const decay = this.decayed.has(name) ? tf.mul(param, weightDecay) : null;
        const delta = decay ? tf.add(update, decay) : update;
        m.assign(mNew);
        v.assign(vNew);
        param.assign(tf.sub(param, tf.mul(delta, lr)));
      }
    });
    this.stepsDone += 1;
  }

  /** Restores moments (training layout) and the step count from a checkpoint. */
  restore(expAvg: Map<string, Float32Array>, expAvgSq: Map<string, Float32Array>, stepsDone: number): void {
    for (const [name, m] of this.expAvg) {
      const savedM = expAvg.get(name);
      const savedV = expAvgSq.get(name);
      if (!savedM || !savedV) throw new Error(`optimizer state has no moments for ${name}`);
      m.assign(tf.tensor(savedM, m.shape));
      (this.expAvgSq.get(name) as tf.Variable).assign(tf.tensor(savedV, m.shape));
    }
    this.stepsDone = stepsDone;
  }

  dispose(): void {
    for (const v of [...this.expAvg.values(), ...this.expAvgSq.values()]) v.dispose();
  }
}

/**
 * Scales gradients in place so that their global L2 norm is at most `maxNorm` (0 = no clipping, as
 * torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
 */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const normTensor = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
  const norm = normTensor.dataSync()[0];
  normTensor.dispose();
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const [name, grad] of grads) {
      grads.set(name, tf.mul(grad, scale));
      grad.dispose();
    }
  }
  return norm;
}
