import { names } from '../checkpoint/names';
import { headDim, ModelConfig } from './config';
import { paramSpecs } from './params';

/**
 * The map between the training layout (`params.ts`: matrices [in, out], experts side by side, fused QKV) and the
 * Qwen2-MoE tensors of a dense checkpoint (`[out, in]`, one tensor per expert projection; docs/design.md §2).
 * Every HF tensor is one "piece" of one training tensor, so the same table converts weights and AdamW moments
 * (element-wise state) in both directions, exactly (a permutation of values).
 */
interface Piece {
  name: string; // Qwen2-MoE tensor name
  shape: number[]; // its shape on disk
  source: string; // training-layout parameter it comes from ('' = always zero, not trained)
  /**
   * contiguous: values [offset, offset + size) as they are.
   * columns:    columns [offset, offset + shape[0]) of the source matrix [rows, cols], transposed to [width, rows].
   * rows:       rows [offset, offset + shape[1]) of the source matrix [rows, cols], transposed to [cols, height].
   */
  kind: 'contiguous' | 'columns' | 'rows' | 'zeros';
  offset: number;
}

/** Every tensor of the dense checkpoint, in file order. */
export function checkpointPieces(config: ModelConfig): Piece[] {
  const d = config.hidden_size;
  const hd = headDim(config);
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const E = config.num_experts;
  const I = config.moe_intermediate_size;
  const Is = config.shared_expert_intermediate_size;
  const V = config.vocab_size;
  const pieces: Piece[] = [{ name: names.embed, shape: [V, d], source: 'embed', kind: 'contiguous', offset: 0 }];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `layers.${l}.`;
    pieces.push(
      { name: names.inputNorm(l), shape: [d], source: p + 'attn_norm', kind: 'contiguous', offset: 0 },
      { name: names.q(l), shape: [H * hd, d], source: p + 'attn.qkv', kind: 'columns', offset: 0 },
      { name: names.k(l), shape: [KV * hd, d], source: p + 'attn.qkv', kind: 'columns', offset: H * hd },
      { name: names.v(l), shape: [KV * hd, d], source: p + 'attn.qkv', kind: 'columns', offset: (H + KV) * hd },
      { name: names.qBias(l), shape: [H * hd], source: p + 'attn.qkv_bias', kind: 'contiguous', offset: 0 },
      { name: names.kBias(l), shape: [KV * hd], source: p + 'attn.qkv_bias', kind: 'contiguous', offset: H * hd },
      { name: names.vBias(l), shape: [KV * hd], source: p + 'attn.qkv_bias', kind: 'contiguous', offset: (H + KV) * hd },
      { name: names.o(l), shape: [d, H * hd], source: p + 'attn.o', kind: 'rows', offset: 0 },
      { name: names.postAttentionNorm(l), shape: [d], source: p + 'mlp_norm', kind: 'contiguous', offset: 0 },
      { name: names.router(l), shape: [E, d], source: p + 'router', kind: 'columns', offset: 0 },
    );
    for (let e = 0; e < E; e++) {
      pieces.push(
        { name: names.expertGate(l, e), shape: [I, d], source: p + 'experts.gate_proj', kind: 'columns', offset: e * I },
        { name: names.expertUp(l, e), shape: [I, d], source: p + 'experts.up_proj', kind: 'columns', offset: e * I },
        { name: names.expertDown(l, e), shape: [d, I], source: p + 'experts.down_proj', kind: 'rows', offset: e * I },
      );
    }
    if (Is > 0) {
      pieces.push(
        { name: names.sharedGate(l), shape: [Is, d], source: p + 'shared.gate_proj', kind: 'columns', offset: 0 },
        { name: names.sharedUp(l), shape: [Is, d], source: p + 'shared.up_proj', kind: 'columns', offset: 0 },
        { name: names.sharedDown(l), shape: [d, Is], source: p + 'shared.down_proj', kind: 'rows', offset: 0 },
        // [d, 1] and [1, d] hold the same values in the same order.
        { name: names.sharedExpertGate(l), shape: [1, d], source: p + 'shared.expert_gate', kind: 'contiguous', offset: 0 },
      );
    } else {
      // vLLM always builds mlp.shared_expert_gate; a zero one is inert (design §2).
      pieces.push({ name: names.sharedExpertGate(l), shape: [1, d], source: '', kind: 'zeros', offset: 0 });
    }
  }
  pieces.push({ name: names.finalNorm, shape: [d], source: 'norm', kind: 'contiguous', offset: 0 });
  if (!config.tie_word_embeddings) pieces.push({ name: names.lmHead, shape: [V, d], source: 'lm_head', kind: 'rows', offset: 0 });
  return pieces;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Training-layout arrays → Qwen2-MoE tensors. */
export function toCheckpointTensors(
  config: ModelConfig,
  arrays: Map<string, Float32Array>,
): { name: string; shape: number[]; data: Float32Array }[] {
  const shapes = new Map(paramSpecs(config).map((s) => [s.name, s.shape]));
  return checkpointPieces(config).map((piece) => {
    const out = new Float32Array(size(piece.shape));
    if (piece.kind !== 'zeros') {
      const src = arrays.get(piece.source);
      if (!src) throw new Error(`no values for parameter ${piece.source}`);
      const cols = (shapes.get(piece.source) as number[])[1];
      copyPiece(piece, src, cols, out, 'to-checkpoint');
    }
    return { name: piece.name, shape: piece.shape, data: out };
  });
}

/** Qwen2-MoE tensors (looked up by name) → training-layout arrays. */
export function fromCheckpointTensors(config: ModelConfig, get: (name: string) => Float32Array): Map<string, Float32Array> {
  const arrays = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const spec of paramSpecs(config)) {
    arrays.set(spec.name, new Float32Array(size(spec.shape)));
    shapes.set(spec.name, spec.shape);
  }
  for (const piece of checkpointPieces(config)) {
    if (piece.kind === 'zeros') continue;
    const cols = (shapes.get(piece.source) as number[])[1];
    copyPiece(piece, arrays.get(piece.source) as Float32Array, cols, get(piece.name), 'from-checkpoint');
  }
  return arrays;
}

/** Moves one piece between a training tensor `src` (row length `cols`) and its checkpoint tensor `hf`. */
function copyPiece(piece: Piece, src: Float32Array, cols: number, hf: Float32Array, direction: 'to-checkpoint' | 'from-checkpoint'): void {
  const toHf = direction === 'to-checkpoint';
  if (piece.kind === 'contiguous') {
    const n = size(piece.shape);
    if (toHf) hf.set(src.subarray(piece.offset, piece.offset + n));
    else src.set(hf.subarray(0, n), piece.offset);
    return;
  }
  if (piece.kind === 'columns') {
    // hf [width, rows] = transpose of src[:, offset : offset + width]
    const [width, rows] = piece.shape;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < width; j++) {
        const s = r * cols + piece.offset + j;
        if (toHf) hf[j * rows + r] = src[s];
        else src[s] = hf[j * rows + r];
      }
    }
    return;
  }
  // rows: hf [cols, height] = transpose of src[offset : offset + height, :]
  const height = piece.shape[1];
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < cols; c++) {
      const s = (piece.offset + r) * cols + c;
      if (toHf) hf[c * height + r] = src[s];
      else src[s] = hf[c * height + r];
    }
  }
}
