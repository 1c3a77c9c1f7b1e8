/**
 * From a validated plan (src/plan/read_plan.ts `readPlan`) to the addon's NativeModelSpec: the rows of the plan
 * tensor table (src/plan/tensor_table.ts) become absolute byte offsets in the weights file under their runtime
 * roles, ops become per-layer fields. readPlan has already checked every row's presence, shape and dtype against
 * the header; this adds what the runtime alone cares about (offset alignment).
 */
import type { LoadedPlan } from '../plan/plan_format';
import { classDtypes, layerOps } from '../plan/plan_format';
import { planTensors, type PlanRole, type PlanTensor } from '../plan/tensor_table';
import { UserError } from '../errors';
import type { NativeModelSpec, NativeTensorRef, TensorDtype } from './native';
import { nativeExpertCacheSpec, type ExpertCacheOptions } from './expert_cache';

export function nativeSpec(loaded: LoadedPlan, threads: number, expertCache?: ExpertCacheOptions): NativeModelSpec {
  const { plan, header, weightsPath } = loaded;
  // The element type and logical shape come from the table (a quantized tensor's header says U8 and bytes).
  const tensor = ({ name, dtype, shape, storage }: PlanTensor): NativeTensorRef => {
    const info = header.tensors.get(name);
    if (!info) throw new UserError(`${weightsPath}: tensor ${name} named by plan.json is missing`);
    if (info.dtype !== storage.dtype) throw new UserError(`${weightsPath}: tensor ${name} has dtype ${info.dtype}, expected ${storage.dtype}`);
    const size = dtype === 'F32' ? 4 : dtype === 'BF16' || dtype === 'F16' ? 2 : 1; // blocks are byte-aligned
    if (info.begin % size !== 0) throw new UserError(`${weightsPath}: tensor ${name} starts at byte ${info.begin}, not a multiple of ${size}`);
    return { name, offset: info.begin, dtype: dtype as TensorDtype, shape: [...shape] };
  };
  const refs = new Map(planTensors(plan).map((row) => [`${row.layer}:${row.role}`, tensor(row)]));
  const ref = (layer: number | null, role: PlanRole) => refs.get(`${layer}:${role}`) as NativeTensorRef;
  const c = plan.config;
  const classes = classDtypes(plan);
  return {
    weightsPath,
    dtype: plan.dtype,
    expertDtype: classes.experts,
    attnDtype: classes.attention,
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
    embed: ref(null, 'embed'),
    norm: ref(null, 'norm'),
    lmHead: c.tie_word_embeddings ? ref(null, 'embed') : ref(null, 'lmHead'),
    threads,
    ...(expertCache ? { expertCache: nativeExpertCacheSpec(plan, expertCache) } : {}),
    layers: plan.layers.map((layer, l) => {
      const ops = layerOps(layer);
      return {
        attnNorm: ref(l, 'attnNorm'),
        qkv: ref(l, 'qkv'),
        qkvBias: ref(l, 'qkvBias'),
        o: ref(l, 'o'),
        ...(ops.attnRouter && ops.attnSelect && ops.attention.kept
          ? {
              attention: {
                experts: ops.attnRouter.num_experts,
                headsPerExpert: ops.attention.heads_per_expert as number,
                router: ref(l, 'attnRouter'),
                kept: [...ops.attention.kept],
                select: { mode: ops.attnSelect.mode, k: ops.attnSelect.k, epsilon: ops.attnSelect.epsilon, kMax: ops.attnSelect.k_max },
              },
            }
          : {}),
        mlpNorm: ref(l, 'mlpNorm'),
        router: ref(l, 'router'),
        // A shared pool's tensors are listed once, under its first layer: every layer of the pool gets the same
        // offsets, so the pool is mapped once and the kernels are unchanged.
        gateUp: ref(ops.experts.pool ?? l, 'gateUp'),
        down: ref(ops.experts.pool ?? l, 'down'),
        pool: ops.experts.pool ?? l,
        preGate: ops.router.pre_gate === true,
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
                gateUp: ref(l, 'sharedGateUp'),
                down: ref(l, 'sharedDown'),
                gate: ref(l, 'sharedGate'),
                intermediate: ops.shared.intermediate_size,
              },
            }
          : {}),
      };
    }),
  };
}
