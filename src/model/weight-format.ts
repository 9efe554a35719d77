import type { Checkpoint } from "./checkpoint.js";
import { describeQuant } from "./quant-config.js";

/**
 * What the weights are stored as, for `cats info` and `cats bench`: the projections' quantization
 * (or float dtype), then the dtype of the rest (embedding, norms, lm_head).
 */
export function describeWeightFormat(ckpt: Checkpoint): string {
  const floats = [...new Set([...ckpt.tensors.values()].filter((t) => t.dtype !== "I32").map((t) => t.dtype))].sort().join("+");
  const q = ckpt.config.quantization;
  return q ? `${describeQuant(q)} projections, ${floats} elsewhere` : floats;
}
