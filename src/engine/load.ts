import type { Checkpoint } from "../model/checkpoint.js";
import { Usage } from "../gpu/flags.js";
import type { LayerWeights, ModelWeights } from "./forward.js";
import { bindingLimit, uploadMatrix, uploadTransposed, uploadVector } from "./weights.js";

/**
 * Reads a checkpoint tensor by tensor into GPU buffers laid out as the kernels read them: q/k/v
 * stacked, W_down transposed (a neuron's weights contiguous), matrices over the binding limit
 * split into row parts, and an empty KV cache per layer.
 */
export async function loadWeights(device: GPUDevice, ckpt: Checkpoint, maxBindingBytes?: number): Promise<ModelWeights> {
  const c = ckpt.config;
  const H = c.hiddenSize;
  const limit = bindingLimit(device, maxBindingBytes);
  const embed = await uploadMatrix(device, ckpt, [{ name: "model.embed_tokens.weight", rows: c.vocabSize }], H, "embed_tokens", limit);
  const lmHead = c.tieWordEmbeddings
    ? embed
    : await uploadMatrix(device, ckpt, [{ name: "lm_head.weight", rows: c.vocabSize }], H, "lm_head", limit);
  const kvBytes = c.maxPositions * c.numKvHeads * c.headDim * 4;
  const qRows = c.numHeads * c.headDim;
  const kvRows = c.numKvHeads * c.headDim;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    const label = (what: string) => `layer ${i} ${what}`;
    layers.push({
      inputNorm: await uploadVector(device, ckpt, `${p}input_layernorm.weight`, H),
      qkv: await uploadMatrix(
        device,
        ckpt,
        [
          { name: `${p}self_attn.q_proj.weight`, rows: qRows },
          { name: `${p}self_attn.k_proj.weight`, rows: kvRows },
          { name: `${p}self_attn.v_proj.weight`, rows: kvRows },
        ],
        H,
        label("qkv"),
        limit,
      ),
      o: await uploadMatrix(device, ckpt, [{ name: `${p}self_attn.o_proj.weight`, rows: H }], qRows, label("o_proj"), limit),
      postNorm: await uploadVector(device, ckpt, `${p}post_attention_layernorm.weight`, H),
      gate: await uploadMatrix(
        device,
        ckpt,
        [{ name: `${p}mlp.gate_proj.weight`, rows: c.intermediateSize }],
        H,
        label("gate_proj"),
        limit,
      ),
      up: await uploadMatrix(device, ckpt, [{ name: `${p}mlp.up_proj.weight`, rows: c.intermediateSize }], H, label("up_proj"), limit),
      downT: await uploadTransposed(device, ckpt, `${p}mlp.down_proj.weight`, H, c.intermediateSize, label("down_proj^T"), limit),
      k: device.createBuffer({ label: label("k cache"), size: kvBytes, usage: Usage.STORAGE }),
      v: device.createBuffer({ label: label("v cache"), size: kvBytes, usage: Usage.STORAGE }),
    });
  }
  const finalNorm = await uploadVector(device, ckpt, "model.norm.weight", H);
  return { embed, layers, finalNorm, lmHead };
}
