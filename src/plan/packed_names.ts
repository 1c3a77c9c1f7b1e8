/** Tensor names inside a plan's `weights.safetensors` (docs/design.md §4). */
export const packedNames = {
  embed: 'embed',
  finalNorm: 'norm',
  lmHead: 'lm_head',
  attnNorm: (l: number) => `layers.${l}.attn_norm`,
  qkv: (l: number) => `layers.${l}.attn.qkv`,
  qkvBias: (l: number) => `layers.${l}.attn.qkv_bias`,
  o: (l: number) => `layers.${l}.attn.o`,
  qNorm: (l: number) => `layers.${l}.attn.q_norm`,
  kNorm: (l: number) => `layers.${l}.attn.k_norm`,
  mlpNorm: (l: number) => `layers.${l}.mlp_norm`,
  router: (l: number) => `layers.${l}.router`,
  expertsGateUp: (l: number) => `layers.${l}.experts.gate_up`,
  expertsDown: (l: number) => `layers.${l}.experts.down`,
  sharedGateUp: (l: number) => `layers.${l}.shared.gate_up`,
  sharedDown: (l: number) => `layers.${l}.shared.down`,
  sharedGate: (l: number) => `layers.${l}.shared.gate`,
};
