import { CatsError } from "../errors.js";
import { Usage } from "../gpu/flags.js";
import { ROW_BLOCK, SLICE_BLOCKS, type QuantFormat } from "../gpu/wgsl.js";
import type { QuantLinear } from "../model/gptq.js";
import { blockRowUnits, padCols, partRows, type GpuMatrix, type MatrixPart } from "./weights.js";

/*
 * Quantized matrices in the layouts kernels/weights8_q.wgsl and weights8_qt.wgsl read: codes stay
 * codes (never dequantized into memory), each group's f16 scale as f32 bits next to its offset
 * -zero * scale, so that a code dequantizes with one multiply-add, exactly.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (v: number): number => ((f32[0] = v), u32[0]);

/** u32 words per block of 8 codes. */
const wordsPerBlock = (bits: 4 | 8): number => bits / 4;

/** Packs a block of 8 codes into `wordsPerBlock` words at out[at]. */
function packBlock(out: Uint32Array, at: number, bits: 4 | 8, code: (j: number) => number): void {
  const per = 32 / bits;
  for (let w = 0; w < wordsPerBlock(bits); w++) {
    let word = 0;
    for (let j = 0; j < per; j++) word |= code(w * per + j) << (bits * j);
    out[at + w] = word >>> 0;
  }
}

/**
 * Rows of one or more Linears stacked (q, k, v) in kernels/qrows.wgsl's layout: per row, the
 * groups' (scale, offset) pairs two to a vec4, then the codes in vec4 chunks. Format q{bits}g{G}
 * with G the group in columns, or the whole padded row for per-row quantization.
 */
export function packRowGroups(linears: QuantLinear[]): {
  format: QuantFormat;
  data: Uint32Array;
  rows: number;
  cols: number;
  rowWords: number;
} {
  const [first] = linears;
  const { bits, cols } = first;
  for (const m of linears) {
    if (m.bits !== bits || m.cols !== cols || m.group !== first.group) {
      throw new CatsError(`stacked quantized matrices must share bits and groups (q${bits} g${first.group} vs q${m.bits} g${m.group})`);
    }
  }
  const padded = padCols(cols);
  const G = first.groups === 1 ? padded : first.group;
  const groups = Math.ceil(padded / G);
  const perChunk = 128 / bits;
  const perWord = 32 / bits;
  const chunks = Math.ceil(padded / perChunk);
  const scaleWords = 4 * Math.ceil(groups / 2);
  const words = scaleWords + 4 * chunks;
  const rows = linears.reduce((a, m) => a + m.rows, 0);
  const data = new Uint32Array(rows * words);
  let row = 0;
  for (const m of linears) {
    for (let o = 0; o < m.rows; o++, row++) {
      const base = row * words;
      for (let g = 0; g < groups; g++) {
        const scale = m.scales[o * m.groups + g];
        data[base + 2 * g] = bitsOf(scale);
        data[base + 2 * g + 1] = bitsOf(-m.zeros[o * m.groups + g] * scale);
      }
      for (let i = 0; i < chunks * perChunk; i++) {
        // Padding columns take their group's zero point, so they dequantize to exactly 0.
        const code = i < cols ? m.codes[o * cols + i] : m.zeros[o * m.groups + Math.min(Math.floor(i / G), groups - 1)];
        data[base + scaleWords + Math.floor(i / perWord)] |= code << (bits * (i % perWord));
      }
    }
  }
  return { format: `q${bits}g${G}`, data, rows, cols, rowWords: words };
}

/**
 * W_down^T of a quantized down_proj: a row per neuron (an input of the Linear), its groups running
 * down the rows. Format q{bits}tg{G}; per-row quantization is one group of every neuron.
 */
export function packTransposedGroups(
  m: QuantLinear,
  sliced = false,
): { format: QuantFormat; data: Uint32Array; rows: number; cols: number } {
  const rows = m.cols; // neurons
  const cols = m.rows; // hidden
  const cols8 = padCols(cols) / 8;
  const wpb = wordsPerBlock(m.bits);
  const G = m.group;
  const groupWords = 16 * cols8 + G * cols8 * wpb;
  const data = new Uint32Array(m.groups * 16 * cols8 + rows * cols8 * wpb);
  for (let gi = 0; gi < m.groups; gi++) {
    const base = gi * groupWords;
    // Padding columns keep scale and offset 0: they dequantize to 0 whatever their code.
    for (let o = 0; o < cols; o++) {
      const scale = m.scales[o * m.groups + gi];
      data[base + o] = bitsOf(scale);
      data[base + 8 * cols8 + o] = bitsOf(-m.zeros[o * m.groups + gi] * scale);
    }
    const inGroup = Math.min(G, rows - gi * G);
    for (let n = gi * G; n < gi * G + inGroup; n++) {
      const r = n - gi * G;
      for (let b = 0; b < cols8; b++) {
        // Row after row, or in column slices of SLICE_BLOCKS blocks (kernels/qtlayout.wgsl).
        const s0 = b - (b % SLICE_BLOCKS);
        const at = sliced ? s0 * inGroup + r * Math.min(SLICE_BLOCKS, cols8 - s0) + b - s0 : r * cols8 + b;
        packBlock(data, base + 16 * cols8 + at * wpb, m.bits, (j) => (b * 8 + j < cols ? m.codes[(b * 8 + j) * m.cols + n] : 0));
      }
    }
  }
  return { format: `q${m.bits}${sliced ? "s" : "t"}g${G}`, data, rows, cols };
}

function gpuBuffer(device: GPUDevice, label: string, data: Uint32Array): GPUBuffer {
  const buffer = device.createBuffer({ label, size: data.byteLength, usage: Usage.STORAGE | Usage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

/**
 * Uploads stacked quantized Linears; rows are self-contained, so a matrix over the binding limit
 * splits by rows (at whole row blocks where one fits, as weights.ts splits float matrices).
 * `blocked`: in row blocks (format q{bits}bg{G}), unless one block would not fit a binding.
 */
export function uploadRowGroups(device: GPUDevice, linears: QuantLinear[], label: string, limit: number, blocked = false): GpuMatrix {
  const packed = packRowGroups(linears);
  const rowBytes = packed.rowWords * 4;
  const perPart = partRows(label, rowBytes, limit);
  const inBlocks = blocked && perPart % ROW_BLOCK === 0;
  const parts: MatrixPart[] = [];
  for (let row0 = 0; row0 < packed.rows; row0 += perPart) {
    const n = Math.min(perPart, packed.rows - row0);
    const slice = packed.data.subarray(row0 * packed.rowWords, (row0 + n) * packed.rowWords);
    // Units of one vec4: qrows.wgsl steps a row's scales and chunks QRS_$W vec4s apart.
    const data = inBlocks ? blockRowUnits(slice, n, packed.rowWords, 4) : slice;
    parts.push({ buffer: gpuBuffer(device, row0 > 0 ? `${label} [${row0}..]` : label, data), row0, rows: n });
  }
  return {
    format: inBlocks ? (packed.format.replace("g", "bg") as QuantFormat) : packed.format,
    rows: packed.rows,
    cols: packed.cols,
    cols4: padCols(packed.cols) / 4,
    parts,
    bytes: packed.data.byteLength,
  };
}

/** Uploads a quantized W_down^T as one binding (groups span rows, so it does not split). */
export function uploadTransposedGroups(device: GPUDevice, m: QuantLinear, label: string, limit: number, sliced = false): GpuMatrix {
  const packed = packTransposedGroups(m, sliced);
  if (packed.data.byteLength > limit) {
    throw new CatsError(`weight ${label}: ${packed.data.byteLength} bytes quantized, over this adapter's ${limit}-byte binding limit`);
  }
  return {
    format: packed.format,
    rows: packed.rows,
    cols: packed.cols,
    cols4: padCols(packed.cols) / 4,
    parts: [{ buffer: gpuBuffer(device, label, packed.data), row0: 0, rows: packed.rows }],
    bytes: packed.data.byteLength,
  };
}
