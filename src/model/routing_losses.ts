import * as tf from '@tensorflow/tfjs';

/** log(max(p, 1e-20)): keeps 0·log 0 = 0 in entropies without NaN gradients. */
function safeLog(p: tf.Tensor): tf.Tensor {
  return tf.log(tf.maximum(p, 1e-20));
}

/**
 * The DS-MoE mutual-information loss of one layer, over the tokens of a batch:
 * `L_MI = −H(mean_x p(·|x)) + mean_x H(p(·|x))`, H(q) = −Σ_e q_e log q_e.
 * The first term spreads load over experts, the second makes each token's routing confident (what lets inference
 * drop experts). Ranges from −log E (balanced one-hot routing) to 0 (uniform, or every token on one expert).
 */
export function mutualInformationLoss(probs: tf.Tensor2D /* [N, E] */): tf.Scalar {
  return tf.tidy(() => {
    const marginal = tf.mean(probs, 0); // [E]
    const marginalEntropy = tf.neg(tf.sum(tf.mul(marginal, safeLog(marginal)))); // []
    const tokenEntropy = tf.neg(tf.sum(tf.mul(probs, safeLog(probs)), 1)); // [N]
    return tf.sub(tf.mean(tokenEntropy), marginalEntropy) as tf.Scalar;
  });
}

/**
 * Switch-Transformer load-balancing loss for the top-k SMoE baseline: `E · Σ_e f_e · P_e`, with f_e the share of
 * the N·k routing slots given to expert e (a constant: selection has no gradient) and P_e the mean probability.
 * Equals 1 under perfectly balanced routing.
 */
export function switchBalanceLoss(probs: tf.Tensor2D /* [N, E] */, selected: tf.Tensor2D /* [N, E] 0/1 */): tf.Scalar {
  return tf.tidy(() => {
    const [n, e] = probs.shape;
    const k = tf.sum(selected).dataSync()[0] / n;
    const dispatchShare = tf.div(tf.sum(selected, 0), n * k); // [E]
    const meanProb = tf.mean(probs, 0); // [E]
    return tf.mul(tf.sum(tf.mul(dispatchShare, meanProb)), e) as tf.Scalar;
  });
}

/**
 * ST-MoE's router z-loss (Zoph et al. 2022, eq. 5): `mean_x (log Σ_e exp(z_e(x)))²` over the router logits z of
 * the batch's tokens. It keeps the logits small (so the softmax stays in the range where float rounding is
 * harmless) without changing which experts win; training only, weight `routing.z_loss_alpha`.
 */
export function routerZLoss(logits: tf.Tensor2D /* [N, E] */): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.square(tf.logSumExp(logits, 1))) as tf.Scalar);
}
