import { CatsError } from "../errors.js";
import type { Checkpoint } from "../model/checkpoint.js";
import { Usage } from "../gpu/flags.js";
import type { LayerWeights, ModelWeights } from "./forward.js";
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
  const embed = await matrix([["model.embed_tokens.weight", c.vocabSize]], H, "embed_tokens");
  const finalGain = await readVector(ckpt, "model.norm.weight", H);
  const lmHead = c.tieWordEmbeddings ? embed : await matrix([["lm_head.weight", c.vocabSize]], H, "lm_head", finalGain);
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
    layers.push({
      qkv: await matrix(qkvNames, H, label("qkv"), inputGain),
      o: await matrix([[`${p}self_attn.o_proj.weight`, H]], qRows, label("o_proj")),
      gate: await matrix([[`${p}mlp.gate_proj.weight`, I]], H, label("gate_proj"), postGain),
      up: await matrix([[`${p}mlp.up_proj.weight`, I]], H, label("up_proj"), postGain),
      downT: await uploadTransposed(device, ckpt, `${p}mlp.down_proj.weight`, H, I, label("down_proj^T"), limit),
      k: device.createBuffer({ label: label("k cache"), size: kvBytes, usage: Usage.STORAGE }),
      v: device.createBuffer({ label: label("v cache"), size: kvBytes, usage: Usage.STORAGE }),
    });
  }
  const lmHeadGain = c.tieWordEmbeddings ? uploadVector(device, finalGain, "model.norm.weight") : null;
  return { embed, layers, lmHeadGain, lmHead };
}
