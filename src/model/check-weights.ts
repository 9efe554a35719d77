import { CatsError } from "../errors.js";
import type { Checkpoint } from "./checkpoint.js";
import { quoted } from "./describe.js";

/** The first element of a tensor that is NaN or infinite, by its exponent bits (all ones). */
function firstNonFinite(bytes: Uint8Array, dtype: string): number {
  if (dtype === "F32") {
    const u = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    for (let i = 0; i < u.length; i++) if ((u[i] & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const mask = dtype === "F16" ? 0x7c00 : 0x7f80;
  const u = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  for (let i = 0; i < u.length; i++) if ((u[i] & mask) === mask) return i;
  return -1;
}

/**
 * Reads every tensor once and refuses the checkpoint at the first NaN or infinity, naming the
 * tensor and the element: such a model decodes a constant token instead of failing.
 */
export async function checkWeightsFinite(ckpt: Checkpoint, onTensor?: (done: number, total: number) => void): Promise<number> {
  const tensors = [...ckpt.tensors.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const [i, t] of tensors.entries()) {
    // Integer tensors (GPTQ codes, zero points, group indices) have no NaN to hold.
    if (t.dtype === "I32") {
      onTensor?.(i + 1, tensors.length);
      continue;
    }
    const bytes = await ckpt.read(t.name);
    // Copy when unaligned: typed views need an aligned offset.
    const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    const at = firstNonFinite(aligned, t.dtype);
    if (at >= 0) {
      const index = t.shape.map((_, d) => Math.floor(at / t.shape.slice(d + 1).reduce((a, b) => a * b, 1)) % t.shape[d]);
      throw new CatsError(`${t.source.name}: tensor ${quoted(t.name)} holds a non-finite value (NaN or infinity) at [${index.join(", ")}]`);
    }
    onTensor?.(i + 1, tensors.length);
  }
  return tensors.length;
}
