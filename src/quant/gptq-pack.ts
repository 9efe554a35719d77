import type { TensorData } from "../model/safetensors-writer.js";
import { floatToHalf } from "../model/dtype.js";
import type { QuantLinear } from "../model/gptq.js";
import { codesPerWord, type QuantConfig } from "../model/quant-config.js";

/** The shapes of a Linear's GPTQ tensors, [rows = out, cols = in]; qweight's input dim rounds up to whole words. */
export function gptqShapes(rows: number, cols: number, bits: 4 | 8, group: number | null): Record<string, number[]> {
  const per = codesPerWord(bits);
  const groups = Math.ceil(cols / (group ?? cols));
  return {
    qweight: [Math.ceil(cols / per), rows],
    qzeros: [groups, Math.ceil(rows / per)],
    scales: [groups, rows],
    g_idx: [cols],
  };
}

/** Whether GPTQ's own layout holds this shape: whole words of codes along both dims, whole groups. */
export const gptqHolds = (rows: number, cols: number, bits: 4 | 8, group: number | null): boolean =>
  cols % codesPerWord(bits) === 0 && rows % codesPerWord(bits) === 0 && (group === null || cols % group === 0);

/**
 * A quantized Linear as GPTQ tensors (AutoGPTQ's QuantLinear.pack): qweight packs codes along the
 * input dim, lowest input in the lowest bits; qzeros packs zero points along the output dim, as
 * zero - 1 in the v1 format ("gptq") and as the zero in "gptq_v2" and "cats"; scales f16; g_idx i // group.
 */
export function packGptq(prefix: string, m: QuantLinear, format: QuantConfig["format"]): TensorData[] {
  const per = codesPerWord(m.bits);
  const shapes = gptqShapes(m.rows, m.cols, m.bits, m.groups === 1 ? null : m.group);
  const qweight = new Int32Array(shapes.qweight[0] * m.rows);
  for (let w = 0; w < shapes.qweight[0]; w++) {
    for (let o = 0; o < m.rows; o++) {
      let word = 0;
      for (let j = 0; j < per; j++) {
        const i = w * per + j;
        if (i < m.cols) word |= m.codes[o * m.cols + i] << (m.bits * j);
      }
      qweight[w * m.rows + o] = word;
    }
  }
  const scales = new Uint16Array(m.groups * m.rows);
  for (let g = 0; g < m.groups; g++) for (let o = 0; o < m.rows; o++) scales[g * m.rows + o] = floatToHalf(m.scales[o * m.groups + g]);
  const gIdx = Int32Array.from({ length: m.cols }, (_, i) => Math.floor(i / m.group));
  return [
    { name: `${prefix}.qweight`, dtype: "I32", shape: shapes.qweight, data: bytes(qweight) },
    packQzeros(prefix, m, format),
    { name: `${prefix}.scales`, dtype: "F16", shape: shapes.scales, data: bytes(scales) },
    { name: `${prefix}.g_idx`, dtype: "I32", shape: shapes.g_idx, data: bytes(gIdx) },
  ];
}

const bytes = (a: Int32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** qzeros alone: the only tensor whose bytes depend on the checkpoint format. */
export function packQzeros(
  prefix: string,
  m: Pick<QuantLinear, "bits" | "rows" | "groups" | "zeros">,
  format: QuantConfig["format"],
): TensorData {
  const per = codesPerWord(m.bits);
  const mask = (1 << m.bits) - 1;
  const zc = Math.ceil(m.rows / per);
  const bias = format === "gptq" ? 1 : 0;
  const qzeros = new Int32Array(m.groups * zc);
  for (let g = 0; g < m.groups; g++) {
    for (let o = 0; o < m.rows; o++) {
      qzeros[g * zc + Math.floor(o / per)] |= ((m.zeros[o * m.groups + g] - bias) & mask) << (m.bits * (o % per));
    }
  }
  return { name: `${prefix}.qzeros`, dtype: "I32", shape: [m.groups, zc], data: bytes(qzeros) };
}
