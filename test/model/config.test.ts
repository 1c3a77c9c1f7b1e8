import { configProblems, denseIntermediateSize, expertPoolOf, expertPools, fromHfConfig, isDenseLayer, moeLayers, parameterCounts, preGated, toHfConfig, withoutDefaults, type ModelConfig } from '../../src/model/config';

const base: ModelConfig = {
  vocab_size: 257,
  hidden_size: 16,
  num_hidden_layers: 31,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_experts: 4,
  moe_intermediate_size: 8,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
};

describe('Megrez2 expert pools', () => {
  test("Megrez2-Preview's shape (31 layers, first_k_dense_replace 1, f 3): the serving code's mapping, written out", () => {
    const config = { ...base, experts_shared_frequency: 3, first_k_dense_replace: 1 };
    // vLLM/SGLang megrez_moe: layer i uses the experts of (i − k) // f · f + k for i ≥ k.
    const want = [0, 1, 1, 1, 4, 4, 4, 7, 7, 7, 10, 10, 10, 13, 13, 13, 16, 16, 16, 19, 19, 19, 22, 22, 22, 25, 25, 25, 28, 28, 28];
    expect(Array.from({ length: 31 }, (_, l) => expertPoolOf(config, l))).toEqual(want);
    // layer 0 is a dense MLP: no routed experts, so no pool
    expect(expertPools(config)).toEqual([1, 4, 7, 10, 13, 16, 19, 22, 25, 28]);
    expect(moeLayers(config)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(isDenseLayer(config, 0) && !isDenseLayer(config, 1)).toBe(true);
  });

  test('dense layers: an MLP of width intermediate_size (default E·I), all of it active, no router or experts', () => {
    const L = 4;
    const d = base.hidden_size;
    const moe = parameterCounts({ ...base, num_hidden_layers: L });
    const dense = parameterCounts({ ...base, num_hidden_layers: L, first_k_dense_replace: 1, intermediate_size: 40 });
    const layerMoe = base.num_experts * d + base.num_experts * 3 * d * base.moe_intermediate_size; // router + experts
    expect(moe.total - dense.total).toBe(layerMoe - 3 * d * 40);
    expect(moe.activePerToken(2) - dense.activePerToken(2)).toBe(base.num_experts * d + 2 * 3 * d * base.moe_intermediate_size - 3 * d * 40);
    expect(denseIntermediateSize(base)).toBe(base.num_experts * base.moe_intermediate_size);
    expect(configProblems({ ...base, first_k_dense_replace: 31 })[0]).toMatch(/first_k_dense_replace \(31\) must be below num_hidden_layers \(31\): at least one layer must be MoE/);
  });

  test('absent fields mean no sharing and no pre-gate', () => {
    expect(Array.from({ length: 31 }, (_, l) => expertPoolOf(base, l))).toEqual(Array.from({ length: 31 }, (_, l) => l));
    expect(Array.from({ length: 31 }, (_, l) => preGated(base, l)).some(Boolean)).toBe(false);
  });

  test('pre-gated layers: from first_k_dense_replace on, never layer 0', () => {
    const four = { ...base, num_hidden_layers: 4, pre_gate: true };
    expect([0, 1, 2, 3].map((l) => preGated(four, l))).toEqual([false, true, true, true]);
    expect([0, 1, 2, 3].map((l) => preGated({ ...four, first_k_dense_replace: 2 }, l))).toEqual([false, false, true, true]);
  });

  test('stored parameters count each pool once; active parameters per token do not change', () => {
    const L = 6;
    const unshared = parameterCounts({ ...base, num_hidden_layers: L });
    const shared = parameterCounts({ ...base, num_hidden_layers: L, experts_shared_frequency: 3 });
    const expertParams = 3 * base.hidden_size * base.moe_intermediate_size;
    expect(unshared.total - shared.total).toBe((L - 2) * base.num_experts * expertParams);
    expect(shared.activePerToken(2)).toBe(unshared.activePerToken(2));
  });

  test('defaults are left out of the config written to disk, other values kept; reading them back round-trips', () => {
    const explicit = { ...base, experts_shared_frequency: 1, first_k_dense_replace: 0, pre_gate: false };
    expect(withoutDefaults(explicit)).toEqual(base);
    expect(JSON.stringify(toHfConfig(explicit))).toBe(JSON.stringify(toHfConfig(base)));
    const megrez = { ...base, experts_shared_frequency: 3, first_k_dense_replace: 1, pre_gate: true };
    expect(fromHfConfig(toHfConfig(megrez))).toEqual(megrez);
    expect(fromHfConfig(toHfConfig(base))).toEqual(base);
    // intermediate_size: written and read only with dense layers and when not E·I
    const wide = { ...megrez, intermediate_size: 48 };
    expect(toHfConfig(wide).intermediate_size).toBe(48);
    expect(fromHfConfig(toHfConfig(wide))).toEqual(wide);
    expect(withoutDefaults({ ...megrez, intermediate_size: 32 })).toEqual(megrez);
    expect(withoutDefaults({ ...base, intermediate_size: 48 })).toEqual(base);
  });

  test('bad values are named', () => {
    expect(configProblems({ ...base, experts_shared_frequency: 0 })).toEqual(['experts_shared_frequency must be a positive integer, got 0']);
    expect(configProblems({ ...base, pre_gate: 'yes' as unknown as boolean })).toEqual(['pre_gate must be true or false']);
    expect(configProblems({ ...base, first_k_dense_replace: 31, experts_shared_frequency: 2 })[0]).toMatch(/first_k_dense_replace \(31\) must be below/);
  });
});

describe('attention experts (MoA, docs/design.md §12)', () => {
  const moa = { ...base, num_attention_heads: 4, num_key_value_heads: 2, attention_experts: 2, heads_per_attention_expert: 2 };

  test('absent or 0 is plain attention, written exactly as before; A > 0 round-trips through config.json', () => {
    expect(withoutDefaults({ ...base, attention_experts: 0 })).toEqual(base);
    expect(JSON.stringify(toHfConfig({ ...base, attention_experts: 0 }))).toBe(JSON.stringify(toHfConfig(base)));
    expect(fromHfConfig(toHfConfig(moa))).toEqual(moa);
    expect(configProblems(moa)).toEqual([]);
  });

  test('bad combinations are named', () => {
    expect(configProblems({ ...moa, heads_per_attention_expert: 1 })).toEqual([
      'attention_experts (2) × heads_per_attention_expert (1) must equal num_attention_heads (4)',
    ]);
    expect(configProblems({ ...base, heads_per_attention_expert: 2 })).toEqual([
      'heads_per_attention_expert (2) is set but attention_experts is 0 (plain attention)',
    ]);
    const { heads_per_attention_expert: _, ...noHeads } = moa;
    expect(configProblems(noHeads)).toEqual(['heads_per_attention_expert is required when attention_experts is 2']);
    expect(configProblems({ ...moa, attention_experts: -1 })).toEqual(['attention_experts must be a non-negative integer, got -1']);
  });

  test('the attention routers add A·d parameters per layer, stored and active', () => {
    const plain = { ...moa, attention_experts: undefined, heads_per_attention_expert: undefined };
    const L = base.num_hidden_layers;
    expect(parameterCounts(moa).total - parameterCounts(withoutDefaults(plain)).total).toBe(L * 2 * base.hidden_size);
    expect(parameterCounts(moa).activePerToken(2) - parameterCounts(withoutDefaults(plain)).activePerToken(2)).toBe(L * 2 * base.hidden_size);
  });
});
