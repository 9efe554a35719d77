import { CatsError } from "../errors.js";
import { shown } from "./describe.js";

/**
 * A checkpoint's weight quantization, as its `quantization_config` states it. GPTQ's tensors
 * (`qweight`, `qzeros`, `scales`, `g_idx`) hold group-wise affine codes: W[o][i] =
 * scale[g][o] * (q[i][o] - zero[g][o]) with g the group of input i.
 */
export interface QuantConfig {
  bits: 4 | 8;
  /** Input columns per group; null: one group per output row (GPTQ's group_size -1). */
  groupSize: number | null;
  sym: boolean;
  /**
   * "gptq" (v1, what AutoGPTQ and transformers write) stores zero - 1 in qzeros; "gptq_v2" stores the
   * zero itself; "cats" is v2 with both dimensions padded to whole words of codes and a shorter last
   * group, for shapes GPTQ cannot hold (README, "Quantized weights").
   */
  format: "gptq" | "gptq_v2" | "cats";
}

export const CHECKPOINT_FORMATS = ["gptq", "gptq_v2", "cats"] as const;

/** Codes per 32-bit word of qweight and qzeros. */
export const codesPerWord = (bits: 4 | 8): number => 32 / bits;

/** The group size in effect for a matrix with `cols` input columns. */
export const effectiveGroup = (q: QuantConfig, cols: number): number => q.groupSize ?? cols;

/** The short name `cats info` and `cats bench` print: q4g64 sym, q8 per-row asym, ... */
export function describeQuant(q: QuantConfig): string {
  return `q${q.bits}${q.groupSize === null ? " per-row" : `g${q.groupSize}`} ${q.sym ? "sym" : "asym"} (${q.format})`;
}

/**
 * Parses `quantization_config` (config.json) or quantize_config.json. Everything that would
 * change the maths and is not implemented is refused by name: other methods (AWQ, bitsandbytes,
 * ...), other bit widths, and activation-order checkpoints (`desc_act`), whose permuted groups
 * the loader checks again in `g_idx`.
 */
export function parseQuantConfig(raw: unknown, file: string, field: string): QuantConfig {
  const fail = (name: string, expected: string, got: unknown): never => {
    throw new CatsError(`${file}: field "${field ? `${field}.` : ""}${name}": expected ${expected}, got ${shown(got)}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("", "an object", raw);
  const q = raw as Record<string, unknown>;
  const method = q.quant_method ?? "gptq";
  if (method !== "gptq") fail("quant_method", '"gptq" (AWQ, bitsandbytes and other methods are not supported)', method);
  const bits = q.bits;
  if (bits !== 4 && bits !== 8) fail("bits", "4 or 8", bits);
  const group = q.group_size ?? -1;
  if (typeof group !== "number" || !Number.isInteger(group) || (group !== -1 && (group <= 0 || group % 8 !== 0))) {
    fail("group_size", "-1 (one group per row) or a positive multiple of 8", group);
  }
  const sym = q.sym ?? true;
  if (typeof sym !== "boolean") fail("sym", "a boolean", sym);
  const format = q.checkpoint_format ?? "gptq";
  if (typeof format !== "string" || !(CHECKPOINT_FORMATS as readonly string[]).includes(format)) {
    fail("checkpoint_format", `one of ${CHECKPOINT_FORMATS.map((f) => `"${f}"`).join(", ")}`, format);
  }
  if (q.desc_act !== undefined && typeof q.desc_act !== "boolean") fail("desc_act", "a boolean", q.desc_act);
  return {
    bits: bits as 4 | 8,
    groupSize: group === -1 ? null : (group as number),
    sym: sym as boolean,
    format: format as QuantConfig["format"],
  };
}
