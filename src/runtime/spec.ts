/**
 * From a validated plan (src/plan/read_plan.ts `readPlan`) to the addon's NativeModelSpec: tensor names become
 * absolute byte offsets in the weights file, ops become per-layer fields. readPlan has already checked every
 * tensor's presence, shape and dtype; this adds what the runtime alone cares about (offset alignment).
 */
import type { LoadedPlan } from '../plan/plan_format';
import { layerOps } from '../plan/plan_format';
import { UserError } from '../errors';
import type { NativeModelSpec, NativeTensorRef, TensorDtype } from './native';

export function nativeSpec(loaded: LoadedPlan, threads: number): NativeModelSpec {
  const { plan, header, weightsPath } = loaded;
  const tensor = (name: string): NativeTensorRef => {
    const info = header.tensors.get(name);
    if (!info) throw new UserError(`${weightsPath}: tensor ${name} named by plan.json is missing`);
    if (info.dtype !== 'F32' && info.dtype !== 'BF16' && info.dtype !== 'F16') {
      throw new UserError(`${weightsPath}: tensor ${name} has dtype ${info.dtype}; the runtime reads F32, BF16 and F16`);
    }
    const size = info.dtype === 'F32' ? 4 : 2;
    if (info.begin % size !== 0) throw new UserError(`${weightsPath}: tensor ${name} starts at byte ${info.begin}, not a multiple of ${size}`);
    return { name, offset: info.begin, dtype: info.dtype as TensorDtype, shape: [...info.shape] };
  };
  const c = plan.config;
  return {
    weightsPath,
    dtype: plan.dtype,
    config: {
      vocab: c.vocab_size,
      hidden: c.hidden_size,
      layers: c.num_hidden_layers,
      heads: c.num_attention_heads,
      kvHeads: c.num_key_value_heads,
      experts: c.num_experts,
      rmsEps: c.rms_norm_eps,
      ropeTheta: c.rope_theta,
    },
    embed: tensor(plan.embedding),
    norm: tensor(plan.final.norm),
    lmHead: tensor(plan.final.lm_head),
    threads,
    layers: plan.layers.map((layer) => {
      const ops = layerOps(layer);
      return {
        attnNorm: tensor(ops.attnNorm.weight),
        qkv: tensor(ops.attention.qkv),
        qkvBias: tensor(ops.attention.qkv_bias),
        o: tensor(ops.attention.o),
        mlpNorm: tensor(ops.mlpNorm.weight),
        router: tensor(ops.router.weight),
        gateUp: tensor(ops.experts.gate_up),
        down: tensor(ops.experts.down),
        intermediate: ops.experts.intermediate_size,
        kept: [...ops.experts.kept],
        select: {
          mode: ops.select.mode,
          k: ops.select.k,
          epsilon: ops.select.epsilon,
          kMax: ops.select.k_max,
          renormalize: ops.select.renormalize,
        },
        ...(ops.shared && ops.shared.intermediate_size > 0
          ? {
              shared: {
                gateUp: tensor(ops.shared.gate_up),
                down: tensor(ops.shared.down),
                gate: tensor(ops.shared.gate),
                intermediate: ops.shared.intermediate_size,
              },
            }
          : {}),
      };
    }),
  };
}
