import { CatsError } from "../errors.js";
import type { Checkpoint } from "../model/checkpoint.js";
import { Usage } from "../gpu/flags.js";
import type { LayerWeights, ModelWeights } from "./forward.js";
import { isQuantized, readQuantLinear } from "../model/gptq.js";
import { uploadRowGroups, uploadTransposedGroups } from "./quant-weights.js";
import type { GpuMatrix } from "./weights.js";
import { isRowBlocked } from "../gpu/wgsl.js";
import { bindingLimit, readVector, uploadMatrix, uploadTransposed, uploadVector } from "./weights.js";

/**
 * The smallest W_down^T (bytes) stored in column slices, where row blocks apply from `rowBlocksFrom`:
 * smaller than the row-block threshold, since the slices pay wherever the model streams from memory
 * (llama-110m's W_down^T is 0.8 MB at q4), but not below 256 KiB, where the fused small-model
 * kernels, which read rows, run instead (stories260K's is 44 KiB); any size where every matrix is
 * in blocks (rowBlocksFrom 0: forced, or a model that streams from memory).
 */
export function downSlicesFrom(rowBlocksFrom: number): number {
  return Number.isFinite(rowBlocksFrom) ? Math.min(rowBlocksFrom, 256 << 10) : Infinity;
}

/**
 * Where W_up goes. "rows": row after row, so that a CATS step reads only its active neurons' rows
 * (in row blocks it would fetch nearly every line anyway); "blocks": in row blocks like W_gate,
 * which streams faster dense (lavapipe, 2026-12-07, one process, interleaved: llama-110m f16 1.11x,
 * at q4 1.12x, `llama2-7b-2l` f16 1.05x) but leaves CATS little to skip; "both": the dense steps read
 * a copy in row blocks and the CATS steps one in rows, for W_up's bytes once more. Where row blocks
 * do not apply (small matrices, GPU kernels) all three are one copy in rows.
 */
export type UpLayout = "rows" | "blocks" | "both";

/**
 * Reads a checkpoint tensor by tensor into GPU buffers laid out as the kernels read them: q/k/v
 * stacked, each RMSNorm's gain folded into the matrices it feeds, W_down transposed (a neuron's
 * weights contiguous), matrices over the binding limit split into row parts, and an empty KV cache
 * per layer. A tied lm_head shares the embedding, so its norm gain stays a vector the kernel applies.
 * The matrices every token reads whole (q/k/v, o, gate, lm_head) of at least `rowBlocksFrom` bytes
 * are stored in row blocks (f32b/f16b, q{bits}bg{G}), which CPU drivers' rows kernels stream
 * faster; W_up as `upLayout` says (UpLayout); W_down^T, where row
 * blocks apply, of at least downSlicesFrom(rowBlocksFrom) bytes goes in column slices (f32s/f16s,
 * q{bits}sg{G}), which the down projection walks as one stream, skipped rows and all.
 */
export async function loadWeights(
  device: GPUDevice,
  ckpt: Checkpoint,
  maxBindingBytes?: number,
  rowBlocksFrom = Infinity,
  upLayout: UpLayout = "rows",
): Promise<ModelWeights> {
  const c = ckpt.config;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const limit = bindingLimit(device, maxBindingBytes);
  const slicesFrom = downSlicesFrom(rowBlocksFrom);
  const matrix = (names: [string, number][], cols: number, label: string, gain: Float32Array | undefined, blocked: boolean) =>
    uploadMatrix(
      device,
      ckpt,
      names.map(([name, rows]) => ({ name, rows })),
      cols,
      label,
      limit,
      gain,
      blocked,
    );
  const prefixOf = (name: string) => name.replace(/\.weight$/, "");
  /**
   * Whether the RMSNorm gain feeding these matrices stays out of their weights and is applied as the
   * input is read (GAIN): quantized codes cannot hold it, and an f16 matrix would round gain x w to
   * f16 again (up to 5e-3 on logits of scale 8). f32 matrices fold it in. Matrices one kernel reads
   * together (gate and up) must agree, so the caller asks for all of them at once.
   */
  const gainAsRead = (names: string[]): boolean =>
    names.some((n) => isQuantized(ckpt, prefixOf(n)) || ckpt.tensors.get(n)?.dtype === "F16");
  /**
   * A projection, float or GPTQ (q/k/v stacked must share one), with `foldGain` folded into float
   * columns; `skipped` for one whose rows CATS skips (kept row after row).
   */
  const projection = async (
    names: [string, number][],
    cols: number,
    label: string,
    foldGain?: Float32Array,
    skipped = false,
  ): Promise<GpuMatrix> => {
    const prefixes = names.map(([name]) => prefixOf(name));
    const quantized = prefixes.filter((p) => isQuantized(ckpt, p));
    if (quantized.length === 0) {
      const bytes = names.reduce((sum, [name, rows]) => sum + rows * cols * (ckpt.tensors.get(name)?.dtype === "F16" ? 2 : 4), 0);
      return matrix(names, cols, label, foldGain, !skipped && bytes >= rowBlocksFrom);
    }
    if (quantized.length !== names.length) {
      throw new CatsError(
        `${ckpt.files.location}: ${label}: ${quantized.join(", ")} quantized but not ${prefixes.filter((p) => !quantized.includes(p)).join(", ")}; stacked projections must share one format`,
      );
    }
    const linears = [];
    for (let i = 0; i < names.length; i++) linears.push(await readQuantLinear(ckpt, prefixes[i], names[i][1], cols));
    const codeBytes = linears.reduce((sum, m) => sum + (m.rows * m.cols * m.bits) / 8, 0);
    return uploadRowGroups(device, linears, label, limit, !skipped && codeBytes >= rowBlocksFrom);
  };
  /** A projection fed by an RMSNorm with gain `gain`: the matrix, and the gain buffer when the kernel applies it. */
  const normed = async (groups: [string, number][][], cols: number, labels: string[], gain: Float32Array, skipped: boolean[] = []) => {
    const asRead = gainAsRead(groups.flat().map(([n]) => n));
    const ws: GpuMatrix[] = [];
    for (const [i, names] of groups.entries()) ws.push(await projection(names, cols, labels[i], asRead ? undefined : gain, skipped[i]));
    return { ws, gain: asRead ? uploadVector(device, gain, `${labels.join(", ")} gain`) : null };
  };
  const downProjection = async (name: string, label: string): Promise<GpuMatrix> => {
    const prefix = prefixOf(name);
    if (!isQuantized(ckpt, prefix)) {
      const bytes = H * I * (ckpt.tensors.get(name)?.dtype === "F16" ? 2 : 4);
      return uploadTransposed(device, ckpt, name, H, I, label, limit, bytes >= slicesFrom);
    }
    const q = await readQuantLinear(ckpt, prefix, H, I);
    return uploadTransposedGroups(device, q, label, limit, (H * I * q.bits) / 8 >= slicesFrom);
  };
  // Quantized only where it is also the (tied) lm_head and `cats quantize --lm-head` made it so.
  const embed = await projection([["model.embed_tokens.weight", c.vocabSize]], H, "embed_tokens");
  const finalGain = await readVector(ckpt, "model.norm.weight", H);
  const untied = c.tieWordEmbeddings ? null : await normed([[["lm_head.weight", c.vocabSize]]], H, ["lm_head"], finalGain);
  const kvBytes = c.maxPositions * c.numKvHeads * c.headDim * 4;
  const kvLimit = bindingLimit(device);
  if (kvBytes > kvLimit) {
    throw new CatsError(
      `the KV cache of ${c.maxPositions} positions needs ${kvBytes} bytes per layer, over this adapter's ${kvLimit}-byte buffer limit; pass a smaller --context`,
    );
  }
  const qRows = c.numHeads * c.headDim;
  const kvRows = c.numKvHeads * c.headDim;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    const label = (what: string) => `layer ${i} ${what}`;
    const inputGain = await readVector(ckpt, `${p}input_layernorm.weight`, H);
    const postGain = await readVector(ckpt, `${p}post_attention_layernorm.weight`, H);
    const qkvNames: [string, number][] = [
      [`${p}self_attn.q_proj.weight`, qRows],
      [`${p}self_attn.k_proj.weight`, kvRows],
      [`${p}self_attn.v_proj.weight`, kvRows],
    ];
    const qkv = await normed([qkvNames], H, [label("qkv")], inputGain);
    if (isQuantized(ckpt, `${p}mlp.gate_proj`) !== isQuantized(ckpt, `${p}mlp.up_proj`)) {
      throw new CatsError(`${ckpt.files.location}: layer ${i}: gate_proj and up_proj must be both quantized or both float`);
    }
    const upNames: [string, number][] = [[`${p}mlp.up_proj.weight`, I]];
    const mlp = await normed([[[`${p}mlp.gate_proj.weight`, I]], upNames], H, [label("gate_proj"), label("up_proj")], postGain, [
      false,
      upLayout === "rows",
    ]);
    // The CATS steps' copy row after row, where the dense steps' went in row blocks (small matrices
    // and GPU kernels keep rows either way, and then one copy serves both).
    const up = mlp.ws[1];
    const upCats =
      upLayout === "both" && isRowBlocked(up.format)
        ? await projection(upNames, H, label("up_proj, rows for CATS"), mlp.gain ? undefined : postGain, true)
        : null;
    layers.push({
      qkv: qkv.ws[0],
      qkvGain: qkv.gain,
      o: await projection([[`${p}self_attn.o_proj.weight`, H]], qRows, label("o_proj")),
      gate: mlp.ws[0],
      up,
      upCats,
      mlpGain: mlp.gain,
      downT: await downProjection(`${p}mlp.down_proj.weight`, label("down_proj^T")),
      k: device.createBuffer({ label: label("k cache"), size: kvBytes, usage: Usage.STORAGE }),
      v: device.createBuffer({ label: label("v cache"), size: kvBytes, usage: Usage.STORAGE }),
    });
  }
  const lmHeadGain = untied ? untied.gain : uploadVector(device, finalGain, "model.norm.weight");
  return { embed, layers, lmHeadGain, lmHead: untied ? untied.ws[0] : embed };
}
