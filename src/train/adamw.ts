import * as tf from '@tensorflow/tfjs';
import { ParamMap } from '../model/params';
import { activeNativeOptimizer } from './native_kernels/fused_optimizer';

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

  /**
   * One update of every parameter from its (already averaged) gradient times `gradScale` (the global-norm clip's
   * factor, `clipScale`). With the native kernels registered the update runs in the addon (one multithreaded pass
   * per parameter, in place; src/train/native_kernels/fused_optimizer.ts), otherwise as tfjs kernels; both compute
   * the formula above in f32 in the same order.
   */
  apply(params: ParamMap, grads: Map<string, tf.Tensor>, lr: number, gradScale = 1): void {
    const { beta1, beta2, eps, weightDecay } = this.settings;
    const t = this.stepsDone + 1;
    const native = activeNativeOptimizer();
    if (native) {
      for (const [name, param] of params) {
        const grad = grads.get(name);
        if (!grad) throw new Error(`no gradient for parameter ${name}`);
        const m = this.expAvg.get(name) as tf.Variable;
        const v = this.expAvgSq.get(name) as tf.Variable;
        native.adamw(param, grad, m, v, { lr, beta1, beta2, eps, weightDecay: this.decayed.has(name) ? weightDecay : 0, step: t, gradScale });
      }
      this.stepsDone += 1;
      return;
    }
    const correction1 = 1 - Math.pow(beta1, t);
    const correction2 = 1 - Math.pow(beta2, t);
    tf.tidy(() => {
      for (const [name, param] of params) {
        const given = grads.get(name);
        if (!given) throw new Error(`no gradient for parameter ${name}`);
        const grad = gradScale === 1 ? given : tf.mul(given, gradScale);
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
 * The global L2 norm of the gradients and the factor that brings it down to `maxNorm` (1 when it is not above,
 * or when `maxNorm` is 0), for `AdamW.apply`'s gradScale: the gradients are not rewritten. The sums of squares run
 * in the addon when the native kernels are registered (double sums), as tfjs kernels otherwise.
 */
export function clipScale(grads: Map<string, tf.Tensor>, maxNorm: number): { norm: number; scale: number } {
  const native = activeNativeOptimizer();
  let norm: number;
  if (native) {
    let sum = 0;
    for (const g of grads.values()) sum += native.sumSquares(g);
    norm = Math.sqrt(sum);
  } else {
    const normTensor = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
    norm = normTensor.dataSync()[0];
    normTensor.dispose();
  }
  return { norm, scale: maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1 };
}
