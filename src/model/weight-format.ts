import type { Checkpoint } from "./checkpoint.js";
import { describeQuant } from "./quant-config.js";
import { GPTQ_PARTS, isQuantized } from "./gptq.js";

/**
 * What the weights are stored as, for `cats info` and `cats bench`: the projections' quantization
 * (or float dtype), then the dtype of the rest (embedding, norms, lm_head, unless quantized too).
 */
export function describeWeightFormat(ckpt: Checkpoint): string {
  // The quantized matrices' own tensors (f16 scales among them) are not "elsewhere".
  const ownParts = (name: string) => GPTQ_PARTS.some((part) => name.endsWith(`.${part}`));
  const rest = [...ckpt.tensors.values()].filter((t) => t.dtype !== "I32" && !ownParts(t.name));
  const floats = [...new Set(rest.map((t) => t.dtype))].sort().join("+");
  const q = ckpt.config.quantization;
  if (!q) return floats;
  const what = isQuantized(ckpt, "model.embed_tokens") ? "projections and the embedding (tied lm_head)" : "projections";
  return `${describeQuant(q)} ${what}, ${floats} elsewhere`;
}
