import { CatsError } from "../errors.js";
import type { Checkpoint } from "../model/checkpoint.js";
import { floatToHalf, toFloat32 } from "../model/dtype.js";
import { BOOL, F16, F32, GraphBuilder, I64, type Placement } from "./onnx-graph.js";
import type onnxProto from "onnx-proto";

export type ExportDtype = "f32" | "f16";

/** Where weight bytes go: the caller decides between inline and an external data file. */
export interface WeightSink {
  place(bytes: Uint8Array): Promise<Placement>;
}

export interface LlamaOnnxOptions {
  dtype: ExportDtype;
  /** CATS: one threshold per layer; an MLP activation is kept where |SiLU(gate)| >= it. Null: dense. */
  thresholds: number[] | null;
  producerVersion: string;
}

/** Bytes the weights take in the export (for choosing external data before writing anything). */
export function exportWeightBytes(ckpt: Checkpoint, dtype: ExportDtype): number {
  let n = 0;
  for (const t of ckpt.tensors.values()) {
    if (t.name.endsWith(".rotary_emb.inv_freq")) continue;
    n += t.shape.reduce((a, b) => a * b, 1) * (dtype === "f16" ? 2 : 4);
  }
  return n;
}

/** float32 values as the export's little-endian bytes. */
function encode(values: Float32Array, dtype: ExportDtype): Uint8Array {
  if (dtype === "f32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
  return new Uint8Array(out.buffer);
}

/** [rows, cols] -> [cols, rows]: HF Linear weights are [out, in], MatMul wants [in, out]. */
function transpose(v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = v[base + c];
  }
  return out;
}

/**
 * HF's rotary tables for positions 0..P-1: emb = cat(freqs, freqs), computed in float64 as
 * ref_llama.py does, stored as float32.
 */
function ropeTables(P: number, hd: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const cos = new Float32Array(P * hd);
  const sin = new Float32Array(P * hd);
  const half = hd / 2;
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * (1 / theta ** ((2 * i) / hd));
      cos[p * hd + i] = cos[p * hd + i + half] = Math.cos(a);
      sin[p * hd + i] = sin[p * hd + i + half] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * A Llama decoder with a KV cache as the ONNX graph transformers.js runs for LlamaForCausalLM.
 * Weights are read, converted and placed one tensor at a time, so the model is never held twice.
 *
 * f16: weights, past/present KV in float16 (what transformers.js' fp16 dtype feeds, read from the
 * session's input types); the arithmetic is float32 through Casts, because onnxruntime's CPU EP has
 * no float16 kernels for most of these ops and float32 sums keep greedy ids equal to cats'.
 */
export async function buildLlamaOnnx(
  ckpt: Checkpoint,
  opts: LlamaOnnxOptions,
  sink: WeightSink,
  onTensor: (name: string) => void = () => {},
): Promise<onnxProto.onnx.ModelProto> {
  const c = ckpt.config;
  if (c.quantization)
    throw new CatsError(`${ckpt.files.location}: GPTQ-quantized checkpoints cannot be exported to ONNX (export the float model)`);
  if (opts.thresholds && opts.thresholds.length !== c.numLayers)
    throw new CatsError(`thresholds: expected ${c.numLayers} (one per layer), got ${opts.thresholds.length}`);
  const g = new GraphBuilder();
  const wType = opts.dtype === "f16" ? F16 : F32;
  const kvType = wType;
  const H = c.numHeads;
  const KV = c.numKvHeads;
  const hd = c.headDim;
  const groups = H / KV;

  /** A checkpoint tensor, optionally transposed, as a float32 value in the graph. */
  const weight = async (name: string, transposed: boolean): Promise<string> => {
    const t = ckpt.tensors.get(name);
    if (!t) throw new CatsError(`${ckpt.files.location}: tensor "${name}" not found in the checkpoint`);
    if (t.dtype === "I32") throw new CatsError(`${t.source.name}: tensor "${name}" is I32; a float tensor is needed`);
    onTensor(name);
    let v = toFloat32(await ckpt.read(name), t.dtype);
    let dims = t.shape;
    if (transposed) {
      v = transpose(v, t.shape[0], t.shape[1]);
      dims = [t.shape[1], t.shape[0]];
    }
    const stored = g.initializer(transposed ? `${name}.T` : name, wType, dims, await sink.place(encode(v, opts.dtype)));
    return wType === F32 ? stored : g.op1("Cast", [stored], { to: F32 });
  };
  const f32Table = async (name: string, v: Float32Array, dims: number[]) =>
    g.initializer(name, F32, dims, await sink.place(encode(v, "f32")));

  // Inputs, named and shaped as transformers.js feeds them.
  const inputIds = g.input("input_ids", I64, ["batch_size", "sequence_length"]);
  const attentionMask = g.input("attention_mask", I64, ["batch_size", "total_sequence_length"]);
  const positionIds = g.input("position_ids", I64, ["batch_size", "sequence_length"]);
  const past: { key: string; value: string }[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const dims = ["batch_size", KV, "past_sequence_length", hd];
    past.push({ key: g.input(`past_key_values.${i}.key`, kvType, dims), value: g.input(`past_key_values.${i}.value`, kvType, dims) });
  }

  const embed = await weight("model.embed_tokens.weight", false);
  let x = g.op1("Gather", [embed, inputIds], { axis: 0 });

  const { cos: cosTable, sin: sinTable } = ropeTables(c.maxPositions, hd, c.ropeTheta);
  const cosAll = await f32Table("rope.cos", cosTable, [c.maxPositions, hd]);
  const sinAll = await f32Table("rope.sin", sinTable, [c.maxPositions, hd]);
  // [B, S, hd] -> [B, 1, S, hd]: broadcast over heads.
  const cos = g.op1("Unsqueeze", [g.op1("Gather", [cosAll, positionIds], { axis: 0 }), g.ints([1])]);
  const sin = g.op1("Unsqueeze", [g.op1("Gather", [sinAll, positionIds], { axis: 0 }), g.ints([1])]);

  // Causal by index (query i sits at past + i), as ref_llama.py and HF do, and padding by attention_mask.
  const zero = g.ints([0], true);
  const one = g.ints([1], true);
  const seqLen = g.op1("Gather", [g.op1("Shape", [inputIds]), one], { axis: 0 });
  const totalLen = g.op1("Gather", [g.op1("Shape", [attentionMask]), one], { axis: 0 });
  const pastLen = g.op1("Sub", [totalLen, seqLen]);
  const qPos = g.op1("Unsqueeze", [g.op1("Add", [g.op1("Range", [zero, seqLen, one]), pastLen]), g.ints([1])]);
  const kPos = g.op1("Unsqueeze", [g.op1("Range", [zero, totalLen, one]), g.ints([0])]);
  const causal = g.op1("LessOrEqual", [kPos, qPos]); // [S, T]
  const padding = g.op1("Cast", [g.op1("Unsqueeze", [attentionMask, g.ints([1, 2, 3])])], { to: BOOL }); // [B, 1, 1, 1, T]
  const allowed = g.op1("And", [causal, padding]); // [B, 1, 1, S, T]
  // The float32 minimum (HF's masking value): a fully masked padding row stays finite.
  const masked = g.scalar(-3.4028234663852886e38);
  const scale = g.scalar(1 / Math.sqrt(hd));
  const eps = g.scalar(c.rmsNormEps);

  const rmsNorm = async (v: string, gain: string): Promise<string> => {
    const ms = g.op1("ReduceMean", [g.op1("Mul", [v, v])], { axes: [-1], keepdims: 1 });
    const normed = g.op1("Div", [v, g.op1("Sqrt", [g.op1("Add", [ms, eps])])]);
    return g.op1("Mul", [normed, await weight(gain, false)]);
  };
  const halves = g.ints([hd / 2, hd / 2]);
  const rope = (v: string): string => {
    const [a, b] = g.op("Split", [v, halves], { axis: -1 }, 2);
    const rotated = g.op1("Concat", [g.op1("Neg", [b]), a], { axis: -1 });
    return g.op1("Add", [g.op1("Mul", [v, cos]), g.op1("Mul", [rotated, sin])]);
  };
  // [B, S, n*hd] -> [B, n, S, hd]
  const heads = (v: string, n: number) => g.op1("Transpose", [g.op1("Reshape", [v, g.ints([0, 0, n, hd])])], { perm: [0, 2, 1, 3] });

  const presents: string[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    const h = await rmsNorm(x, `${p}.input_layernorm.weight`);
    const q = rope(heads(g.op1("MatMul", [h, await weight(`${p}.self_attn.q_proj.weight`, true)]), H));
    const k = rope(heads(g.op1("MatMul", [h, await weight(`${p}.self_attn.k_proj.weight`, true)]), KV));
    const v = heads(g.op1("MatMul", [h, await weight(`${p}.self_attn.v_proj.weight`, true)]), KV);
    const pastK = kvType === F32 ? past[i].key : g.op1("Cast", [past[i].key], { to: F32 });
    const pastV = kvType === F32 ? past[i].value : g.op1("Cast", [past[i].value], { to: F32 });
    const keys = g.op1("Concat", [pastK, k], { axis: 2 }); // [B, KV, T, hd]
    const values = g.op1("Concat", [pastV, v], { axis: 2 });
    for (const [name, val] of [
      [`present.${i}.key`, keys],
      [`present.${i}.value`, values],
    ]) {
      g.op1(kvType === F32 ? "Identity" : "Cast", [val], kvType === F32 ? {} : { to: kvType }, name);
      presents.push(name);
    }
    // Grouped-query attention without copying K/V per head: queries as [B, KV, groups, S, hd]
    // against keys broadcast as [B, KV, 1, T, hd].
    const qg = g.op1("Reshape", [q, g.ints([0, KV, groups, -1, hd])]);
    const kT = g.op1("Transpose", [g.op1("Unsqueeze", [keys, g.ints([2])])], { perm: [0, 1, 2, 4, 3] });
    const scores = g.op1("Mul", [g.op1("MatMul", [qg, kT]), scale]);
    const probs = g.op1("Softmax", [g.op1("Where", [allowed, scores, masked])], { axis: -1 });
    const ctx = g.op1("MatMul", [probs, g.op1("Unsqueeze", [values, g.ints([2])])]); // [B, KV, groups, S, hd]
    const merged = g.op1("Transpose", [g.op1("Reshape", [ctx, g.ints([0, H, -1, hd])])], { perm: [0, 2, 1, 3] });
    const attn = g.op1("MatMul", [g.op1("Reshape", [merged, g.ints([0, 0, -1])]), await weight(`${p}.self_attn.o_proj.weight`, true)]);
    x = g.op1("Add", [x, attn]);

    const h2 = await rmsNorm(x, `${p}.post_attention_layernorm.weight`);
    const gate = g.op1("MatMul", [h2, await weight(`${p}.mlp.gate_proj.weight`, true)]);
    let act = g.op1("Mul", [gate, g.op1("Sigmoid", [gate])]);
    if (opts.thresholds) {
      // CATS as kernels/gate_up.wgsl decides: keep where |a| >= threshold (not strict).
      const keep = g.op1("GreaterOrEqual", [g.op1("Abs", [act]), g.scalar(Math.fround(opts.thresholds[i]))]);
      act = g.op1("Where", [keep, act, g.scalar(0)]);
    }
    const up = g.op1("MatMul", [h2, await weight(`${p}.mlp.up_proj.weight`, true)]);
    const down = g.op1("MatMul", [g.op1("Mul", [act, up]), await weight(`${p}.mlp.down_proj.weight`, true)]);
    x = g.op1("Add", [x, down]);
  }
  const final = await rmsNorm(x, "model.norm.weight");
  // Tied: the embedding transposed in the graph (onnxruntime folds it once) rather than stored twice.
  const head = c.tieWordEmbeddings ? g.op1("Transpose", [embed], { perm: [1, 0] }) : await weight("lm_head.weight", true);
  g.op1("MatMul", [final, head], {}, "logits");

  g.output("logits", F32, ["batch_size", "sequence_length", c.vocabSize]);
  for (const name of presents) g.output(name, kvType, ["batch_size", KV, "total_sequence_length", hd]);
  return g.model("cats-llama", opts.producerVersion);
}
