import { CatsError } from "../errors.js";
import type { Checkpoint } from "../model/checkpoint.js";
import { Usage } from "../gpu/flags.js";
import type { LayerWeights, ModelWeights } from "./forward.js";
import { isQuantized, readQuantLinear } from "../model/gptq.js";
import { uploadRowGroups, uploadTransposedGroups } from "./quant-weights.js";
import type { GpuMatrix } from "./weights.js";
import { bindingLimit, readVector, uploadMatrix, uploadTransposed, uploadVector } from "./weights.js";

/**
 * Reads a checkpoint tensor by tensor into GPU buffers laid out as the kernels read them: q/k/v
 * stacked, each RMSNorm's gain folded into the matrices it feeds, W_down transposed (a neuron's
 * weights contiguous), matrices over the binding limit split into row parts, and an empty KV cache
 * per layer. A tied lm_head shares the embedding, so its norm gain stays a vector the kernel applies.
 */
export async function loadWeights(device: GPUDevice, ckpt: Checkpoint, maxBindingBytes?: number): Promise<ModelWeights> {
  const c = ckpt.config;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const limit = bindingLimit(device, maxBindingBytes);
  const matrix = (names: [string, number][], cols: number, label: string, gain?: Float32Array) =>
    uploadMatrix(
      device,
      ckpt,
      names.map(([name, rows]) => ({ name, rows })),
      cols,
      label,
      limit,
      gain,
    );
  /**
   * A projection, float or GPTQ. A float matrix takes the feeding RMSNorm's gain into its columns;
   * quantized codes cannot hold it, so the kernel applies it to the input instead (GAIN).
   */
  const projection = async (
    names: [string, number][],
    cols: number,
    label: string,
    gain?: Float32Array,
  ): Promise<{ w: GpuMatrix; gain: GPUBuffer | null }> => {
    const prefixes = names.map(([name]) => name.replace(/\.weight$/, ""));
    const quantized = prefixes.filter((p) => isQuantized(ckpt, p));
    if (quantized.length === 0) {
      // An f16 matrix would round gain * w to f16 again (up to 5e-3 on logits of scale 8): f32 folds, f16 applies it.
      const f16 = names.every(([n]) => ckpt.tensors.get(n)?.dtype === "F16");
      if (!f16 || !gain) return { w: await matrix(names, cols, label, gain), gain: null };
      return { w: await matrix(names, cols, label), gain: uploadVector(device, gain, `${label} gain`) };
    }
    if (quantized.length !== names.length) {
      throw new CatsError(
        `${ckpt.files.location}: ${label}: ${quantized.join(", ")} quantized but not ${prefixes.filter((p) => !quantized.includes(p)).join(", ")}; stacked projections must share one format`,
      );
    }
    const linears = [];
    for (let i = 0; i < names.length; i++) linears.push(await readQuantLinear(ckpt, prefixes[i], names[i][1], cols));
    return { w: uploadRowGroups(device, linears, label, limit), gain: gain ? uploadVector(device, gain, `${label} gain`) : null };
  };
  const downProjection = async (name: string, label: string): Promise<GpuMatrix> => {
    const prefix = name.replace(/\.weight$/, "");
    if (!isQuantized(ckpt, prefix)) return uploadTransposed(device, ckpt, name, H, I, label, limit);
    return uploadTransposedGroups(device, await readQuantLinear(ckpt, prefix, H, I), label, limit);
  };
  const embed = await matrix([["model.embed_tokens.weight", c.vocabSize]], H, "embed_tokens");
  const finalGain = await readVector(ckpt, "model.norm.weight", H);
  const untied = c.tieWordEmbeddings ? null : await projection([["lm_head.weight", c.vocabSize]], H, "lm_head", finalGain);
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
    const qkv = await projection(qkvNames, H, label("qkv"), inputGain);
    const gate = await projection([[`${p}mlp.gate_proj.weight`, I]], H, label("gate_proj"), postGain);
    const up = await projection([[`${p}mlp.up_proj.weight`, I]], H, label("up_proj"), postGain);
    if ((gate.gain === null) !== (up.gain === null)) {
      throw new CatsError(`${ckpt.files.location}: layer ${i}: gate_proj and up_proj must be both quantized or both float`);
    }
    layers.push({
      qkv: qkv.w,
      qkvGain: qkv.gain,
      o: (await projection([[`${p}self_attn.o_proj.weight`, H]], qRows, label("o_proj"))).w,
      gate: gate.w,
      up: up.w,
      mlpGain: gate.gain,
      downT: await downProjection(`${p}mlp.down_proj.weight`, label("down_proj^T")),
      k: device.createBuffer({ label: label("k cache"), size: kvBytes, usage: Usage.STORAGE }),
      v: device.createBuffer({ label: label("v cache"), size: kvBytes, usage: Usage.STORAGE }),
    });
  }
  const lmHeadGain = untied ? untied.gain : uploadVector(device, finalGain, "model.norm.weight");
  return { embed, layers, lmHeadGain, lmHead: untied ? untied.w : embed };
}
