import type { Ops, Step } from "./ops.js";
import type { GpuMatrix } from "./weights.js";

/** Matrices fed by an RMSNorm (qkv, gate, up, an untied lm_head) have its gain folded into their columns. */
export interface LayerWeights {
  /** W_q, W_k, W_v stacked: [(heads + 2 kv_heads) * head_dim, hidden], input_layernorm's gain folded in. */
  qkv: GpuMatrix;
  /** input_layernorm's gain when qkv is quantized and cannot hold it (applied as the input is read). */
  qkvGain: GPUBuffer | null;
  /** [hidden, heads * head_dim] */
  o: GpuMatrix;
  /** [inter, hidden] each, post_attention_layernorm's gain folded in */
  gate: GpuMatrix;
  up: GpuMatrix;
  /**
   * W_up row after row for the CATS decode steps, where `up` is in row blocks for the dense ones
   * (UpLayout "both"); null: every step reads `up`.
   */
  upCats: GpuMatrix | null;
  /** post_attention_layernorm's gain when gate and up are quantized. */
  mlpGain: GPUBuffer | null;
  /** W_down transposed: [inter, hidden], a neuron's weights contiguous. */
  downT: GpuMatrix;
  /** [context, kv_heads * head_dim] each */
  k: GPUBuffer;
  v: GPUBuffer;
}

export interface ModelWeights {
  /** [vocab, hidden] */
  embed: GpuMatrix;
  layers: LayerWeights[];
  /** [vocab, hidden], the final norm's gain folded in; the embedding itself when tied. */
  lmHead: GpuMatrix;
  /** The final norm's gain when lm_head is the (tied) embedding and cannot hold it. */
  lmHeadGain: GPUBuffer | null;
}

/** Activation buffers, rows of `tokens` (a pass's tokens, rounded up to whole tiles). */
export interface Activations {
  state: GPUBuffer;
  /** [tokens] u32 */
  tokens: GPUBuffer;
  /** [tokens, hidden]: the residual stream */
  x: GPUBuffer;
  /** [1, hidden]: the last row of x after a prefill */
  xLast: GPUBuffer;
  /** [tokens, (heads + 2 kv_heads) * head_dim] */
  qkv: GPUBuffer;
  /** [tokens, heads * head_dim]: q after RoPE (batched passes) */
  q: GPUBuffer;
  /** [tokens, heads * head_dim]: attention output */
  o: GPUBuffer;
  /** [tokens, inter]: silu(gate) * up, CATS-masked */
  act: GPUBuffer;
  /** [tokens, vocab] */
  logits: GPUBuffer;
  /** [layers] u32: active (neuron, token) pairs since the last read */
  totals: GPUBuffer;
  /** [layers, tokens, inter]: |silu(gate)| dump for calibration, or a placeholder */
  capture: GPUBuffer;
}

export interface Strides {
  hidden: number;
  inter: number;
  qkv: number;
  q: number;
  vocab: number;
}

/** Where the forward pass ends: nothing (an inner prefill chunk), the last token's logits, or every token's. */
export type PassOutput = "none" | "last" | "all";

/**
 * The forward pass, one op per line in the order of the math (HF LlamaForCausalLM, ref_llama.py):
 *   x = E[tokens]
 *   per layer:  qkv = rmsnorm(x) W_qkv;  q, k = rope(q, k);  cache k, v
 *               o = softmax(q K^T / sqrt(d) + mask) V;  x += o W_o
 *               act = silu(h W_gate) * (h W_up), h = rmsnorm(x), CATS mask;  x += act W_down
 *   logits = rmsnorm(x) W_lm
 * `batch` passes (prefill, evaluation, calibration) tile tokens and keep RoPE as its own step; a
 * decode step (one token) fuses RoPE and the KV write into attention, and on adapters where it
 * measures faster the qkv projection too; for small models o_proj with the whole MLP, or the whole
 * layer, can be one dispatch of one subgroup (o_mlp.wgsl, layer.wgsl). The RMSNorms are fused into
 * the projections they feed (their gains folded into the weights at load) and the residual adds
 * into the projections that produce them.
 */
export interface PassKind {
  /** Several tokens per pass (tiles, RoPE as a step) rather than one decode token. */
  batch: boolean;
  /** A decode token whose MLP CATS masks: its down projection runs the variant chosen for masked inputs. */
  cats?: boolean;
  output: PassOutput;
  /** Rows per layer of the capture buffer when the pass dumps |silu(gate)| for calibration. */
  captureRows: number | null;
}

export function forwardSteps(
  ops: Ops,
  m: ModelWeights,
  b: Activations,
  s: Strides,
  { batch, cats, output, captureRows }: PassKind,
): Step[] {
  const steps: Step[] = [...ops.embed(m.embed, b.tokens, b.x)];
  m.layers.forEach((l, i) => {
    const at = (op: string) => `layer ${i} ${op}`;
    // A decode token of the smallest models may run the whole layer below as one dispatch (layer.wgsl).
    const fused = batch ? null : ops.fusedLayer(at("layer"), l, b, { layer: i, totals: b.totals, cats });
    if (fused) {
      steps.push(fused);
      return;
    }
    if (batch) {
      steps.push(...ops.project(at("qkv"), l.qkv, b.x, b.qkv, { batch, norm: true, gain: l.qkvGain, xStride: s.hidden, yStride: s.qkv }));
      steps.push(ops.ropeKv(at("rope"), b.qkv, b.q, l.k, l.v));
      steps.push(ops.attention(at("attention"), b.q, l.k, l.v, b.o));
    } else {
      steps.push(...ops.qkvAttention(at, l.qkv, b.x, { gain: l.qkvGain, qkv: b.qkv, k: l.k, v: l.v, out: b.o }));
    }
    steps.push(
      ...ops.oMlp(at, l, b, {
        batch,
        cats,
        layer: i,
        totals: b.totals,
        capture: b.capture,
        captureOffset: captureRows === null ? null : i * captureRows * s.inter,
      }),
    );
  });
  if (output === "all") {
    steps.push(
      ...ops.project("lm_head", m.lmHead, b.x, b.logits, { batch, norm: true, gain: m.lmHeadGain, xStride: s.hidden, yStride: s.vocab }),
    );
  } else if (output === "last") {
    // A decode step's only row is its last; a prefill's last row is copied out first.
    if (batch) steps.push(ops.lastRow(b.x, b.xLast));
    const x = batch ? b.xLast : b.x;
    steps.push(
      ...ops.project("lm_head", m.lmHead, x, b.logits, {
        batch: false,
        norm: true,
        gain: m.lmHeadGain,
        xStride: s.hidden,
        yStride: s.vocab,
      }),
    );
  }
  return steps;
}
