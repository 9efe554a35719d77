import { CatsError } from "../errors.js";
import type { Checkpoint, CheckpointTensor } from "./checkpoint.js";
import { halfToFloat } from "./dtype.js";
import { codesPerWord, effectiveGroup, type QuantConfig } from "./quant-config.js";

/** The tensors GPTQ stores for one quantized Linear, in place of its `.weight`. */
export const GPTQ_PARTS = ["qweight", "qzeros", "scales", "g_idx"] as const;

/**
 * One quantized Linear unpacked into plain arrays, in HF orientation (W[o][i], `rows` outputs by
 * `cols` inputs): codes one byte each, zero points and scales per (row, group). The dequantized
 * weight is scales[g] * (code - zeros[g]), exact in float32: an f16 scale times a 9-bit integer.
 */
export interface QuantLinear {
  bits: 4 | 8;
  rows: number;
  cols: number;
  /** Input columns per group (the last group may be shorter). */
  group: number;
  groups: number;
  /** [rows * cols], codes[o * cols + i] */
  codes: Uint8Array;
  /** [rows * groups], zeros[o * groups + g]: the integer zero point (v1's stored zero - 1 already undone) */
  zeros: Uint16Array;
  /** [rows * groups], float16 values */
  scales: Float32Array;
}

function int32s(bytes: Uint8Array): Int32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Int32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

function floats(bytes: Uint8Array, t: CheckpointTensor): Float32Array {
  if (t.dtype === "F32") return new Float32Array(bytes.slice().buffer);
  const h = new Uint16Array(bytes.slice().buffer);
  return Float32Array.from(h, halfToFloat);
}

/** Whether the checkpoint stores this Linear (`prefix` without `.weight`) as GPTQ tensors. */
export const isQuantized = (ckpt: Checkpoint, prefix: string): boolean => ckpt.tensors.has(`${prefix}.qweight`);

/**
 * Reads and validates one GPTQ Linear: dtypes, shapes from the config, g_idx in natural group
 * order (activation-order checkpoints permute it, which the kernels do not implement).
 */
export async function readQuantLinear(ckpt: Checkpoint, prefix: string, rows: number, cols: number): Promise<QuantLinear> {
  const q = ckpt.config.quantization;
  const tensor = (part: string, dtypes: string[], shape: number[]): CheckpointTensor => {
    const name = `${prefix}.${part}`;
    const t = ckpt.tensors.get(name);
    if (!t) throw new CatsError(`${ckpt.files.location}: tensor "${name}" is missing (a GPTQ Linear needs qweight, qzeros and scales)`);
    if (!dtypes.includes(t.dtype)) {
      throw new CatsError(`${t.source.name}: tensor "${name}": field "dtype": expected ${dtypes.join(" or ")}, got ${t.dtype}`);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new CatsError(
        `${t.source.name}: tensor "${name}": field "shape": expected ${JSON.stringify(shape)} for a ${rows} x ${cols} Linear at ${describeBits(q!)}, got ${JSON.stringify(t.shape)}`,
      );
    }
    return t;
  };
  if (!q) {
    throw new CatsError(`${ckpt.files.location}: tensor "${prefix}.qweight" is GPTQ-quantized but config.json has no quantization_config`);
  }
  const per = codesPerWord(q.bits);
  const group = effectiveGroup(q, cols);
  const groups = Math.ceil(cols / group);
  if (q.format !== "cats" && cols % per !== 0) {
    throw new CatsError(
      `${ckpt.files.location}: "${prefix}": ${cols} input columns are not a whole number of ${per}-code words, which GPTQ's layout needs (cats quantize writes checkpoint_format "cats" for such shapes)`,
    );
  }
  const tq = tensor("qweight", ["I32"], [Math.ceil(cols / per), rows]);
  const tz = tensor("qzeros", ["I32"], [groups, Math.ceil(rows / per)]);
  const ts = tensor("scales", ["F16", "F32"], [groups, rows]);
  const mask = (1 << q.bits) - 1;

  const gIdxName = `${prefix}.g_idx`;
  if (ckpt.tensors.has(gIdxName)) {
    const g = int32s(await ckpt.read(tensor("g_idx", ["I32"], [cols]).name));
    for (let i = 0; i < cols; i++) {
      if (g[i] !== Math.floor(i / group)) {
        throw new CatsError(
          `${ckpt.files.location}: tensor "${gIdxName}": input ${i} is in group ${g[i]}, expected ${Math.floor(i / group)}; activation-order (desc_act) checkpoints with permuted groups are not supported`,
        );
      }
    }
  }

  const qweight = int32s(await ckpt.read(tq.name));
  const codes = new Uint8Array(rows * cols);
  for (let w = 0; w < tq.shape[0]; w++) {
    for (let o = 0; o < rows; o++) {
      const word = qweight[w * rows + o];
      for (let j = 0; j < per; j++) {
        const i = w * per + j;
        if (i < cols) codes[o * cols + i] = (word >>> (q.bits * j)) & mask;
      }
    }
  }
  const qzeros = int32s(await ckpt.read(tz.name));
  const zc = tz.shape[1];
  const zeros = new Uint16Array(rows * groups);
  // v1 (AutoGPTQ, transformers) stores zero - 1; a nibble of 15 means a zero point of 16.
  const zeroBias = q.format === "gptq" ? 1 : 0;
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < rows; o++) {
      zeros[o * groups + g] = ((qzeros[g * zc + Math.floor(o / per)] >>> (q.bits * (o % per))) & mask) + zeroBias;
    }
  }
  const s = floats(await ckpt.read(ts.name), ts);
  const bad = s.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new CatsError(`${ts.source.name}: tensor "${ts.name}": element ${bad} is ${s[bad]}; scales must be finite`);
  const scales = new Float32Array(rows * groups);
  for (let g = 0; g < groups; g++) for (let o = 0; o < rows; o++) scales[o * groups + g] = s[g * rows + o];
  return { bits: q.bits, rows, cols, group, groups, codes, zeros, scales };
}

const describeBits = (q: QuantConfig): string => `${q.bits} bits, group ${q.groupSize ?? "per row"}`;

/** W[o][i] in float32 (exact): the reference forward and the quantizer's round trip use it. */
export function dequantize(m: QuantLinear): Float32Array {
  const w = new Float32Array(m.rows * m.cols);
  for (let o = 0; o < m.rows; o++) {
    for (let i = 0; i < m.cols; i++) {
      const g = o * m.groups + Math.floor(i / m.group);
      w[o * m.cols + i] = m.scales[g] * (m.codes[o * m.cols + i] - m.zeros[g]);
    }
  }
  return w;
}
