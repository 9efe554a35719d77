import { Usage } from "../gpu/flags.js";
import { CatsError } from "../errors.js";
import type { Checkpoint, CheckpointTensor } from "../model/checkpoint.js";
import { floatToHalf, halfToFloat, toFloat32 } from "../model/dtype.js";
import { floatBytes, isRowBlocked, isSliced, ROW_BLOCK, SLICE_BLOCKS, type FloatFormat, type WeightFormat } from "../gpu/wgsl.js";

/** Row padding: rows are whole blocks of 8 columns (two vec4s, one f16 quad pair), so no kernel tests a tail. */
export const ROW_ALIGN = 8;
export const padCols = (n: number): number => Math.ceil(n / ROW_ALIGN) * ROW_ALIGN;

/** A run of a matrix's rows in one GPU buffer: matrices over the adapter's binding limit are split into several. */
export interface MatrixPart {
  buffer: GPUBuffer;
  /** First row of the matrix this part holds. */
  row0: number;
  rows: number;
}

export interface GpuMatrix {
  format: WeightFormat;
  rows: number;
  cols: number;
  /** Blocks of 4 columns per (padded) row: the row stride, in vec4s, the kernels use. */
  cols4: number;
  parts: MatrixPart[];
  /** Bytes of all parts: what reading the whole matrix once costs. */
  bytes: number;
}

function tensorOf(ckpt: Checkpoint, name: string, shape: number[]): CheckpointTensor {
  const t = ckpt.tensors.get(name);
  if (!t) throw new CatsError(`${ckpt.files.location}: tensor "${name}" is missing from the checkpoint`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new CatsError(
      `${t.source.name}: tensor "${name}": field "shape": expected ${JSON.stringify(shape)} from config.json, got ${JSON.stringify(t.shape)}`,
    );
  }
  if (t.dtype === "I32") throw new CatsError(`${t.source.name}: tensor "${name}": field "dtype": expected F32, F16 or BF16, got I32`);
  return t;
}

/** The largest buffer one binding may hold on this device, or a smaller limit forced by the caller (tests). */
export function bindingLimit(device: GPUDevice, forced?: number): number {
  return Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize, forced ?? Infinity);
}

/** The float format of f16 or f32 data, row after row or in row blocks. */
export const floatFormat = (f16: boolean, blocked: boolean, sliced = false): FloatFormat =>
  `f${f16 ? 16 : 32}${sliced ? "s" : blocked ? "b" : ""}` as FloatFormat;

/**
 * Rearranges `rows` rows of `units` blocks of 8 columns (`unitWords` words each) into column
 * slices of SLICE_BLOCKS blocks, each slice every row's part in row order (kernels/sliceblock.wgsl).
 */
export function sliceRowUnits(src: Uint32Array, rows: number, units: number, unitWords: number): Uint32Array {
  const out = new Uint32Array(rows * units * unitWords);
  let at = 0;
  for (let s0 = 0; s0 < units; s0 += SLICE_BLOCKS) {
    const width = Math.min(SLICE_BLOCKS, units - s0) * unitWords;
    for (let r = 0; r < rows; r++) {
      const from = (r * units + s0) * unitWords;
      out.set(src.subarray(from, from + width), at);
      at += width;
    }
  }
  return out;
}

/**
 * Rearranges `rows` row-major rows of `rowWords` words into row blocks (kernels/rowblock.wgsl,
 * qrows.wgsl): each row is units of `unitWords` words (an 8-column block of floats, a vec4 of
 * codes or scales), and per block of ROW_BLOCK rows the rows' k-th units lie side by side, row
 * 4l + r at slot 8r + l (the order an 8-lane fibre of 4-row lanes reads them). Whole blocks come
 * back; the slots of rows past the end stay zero.
 */
export function blockRowUnits(src: Uint32Array, rows: number, rowWords: number, unitWords: number): Uint32Array {
  const out = new Uint32Array(Math.ceil(rows / ROW_BLOCK) * ROW_BLOCK * rowWords);
  for (let row = 0; row < rows; row++) {
    const j = row % ROW_BLOCK;
    const slot = (j % 4) * (ROW_BLOCK / 4) + Math.floor(j / 4);
    for (let k = 0; k < rowWords / unitWords; k++) {
      const from = row * rowWords + k * unitWords;
      const to = (row - j) * rowWords + (k * ROW_BLOCK + slot) * unitWords;
      for (let w = 0; w < unitWords; w++) out[to + w] = src[from + w];
    }
  }
  return out;
}

/**
 * Rows per part of a matrix split across bindings of at most `limit` bytes: whole row blocks
 * (ROW_BLOCK rows) where one fits, in either layout, so that gate (in blocks) and up (row after
 * row) split at the same rows, as the gate/up kernel reads them. Where a block would not fit, fewer
 * rows (a blocked matrix is then stored row after row: the result is not a multiple of ROW_BLOCK).
 */
export function partRows(label: string, rowBytes: number, limit: number): number {
  const fitting = Math.floor(limit / rowBytes);
  if (fitting < 1) throw new CatsError(`weight ${label}: one row needs ${rowBytes} bytes, over this adapter's ${limit}-byte binding limit`);
  return fitting < ROW_BLOCK ? fitting : fitting - (fitting % ROW_BLOCK);
}

/**
 * Writes rows into GPU buffers of at most `limit` bytes each (partRows), rows padded to whole
 * blocks of 8 columns, one part at a time; where one row block would not fit a binding, f32b/f16b
 * fall back to rows. `fill` copies rows [row0, row0 + rows) of the matrix, already in the storage
 * format, into `dst` at the padded row stride `rowBytes`.
 */
async function uploadRows(
  device: GPUDevice,
  label: string,
  format: FloatFormat,
  rows: number,
  cols: number,
  limit: number,
  fill: (dst: Uint8Array, row0: number, rows: number, rowBytes: number) => Promise<void>,
): Promise<GpuMatrix> {
  const cols4 = padCols(cols) / 4;
  const elem = floatBytes(format);
  const rowBytes = cols4 * 4 * elem;
  const perPart = partRows(label, rowBytes, limit);
  if (isRowBlocked(format) && perPart % ROW_BLOCK !== 0)
    return uploadRows(device, label, floatFormat(elem === 2, false), rows, cols, limit, fill);
  const block = isRowBlocked(format) ? ROW_BLOCK : 1;
  const parts: MatrixPart[] = [];
  for (let row0 = 0; row0 < rows; row0 += perPart) {
    const n = Math.min(perPart, rows - row0);
    const size = Math.ceil(n / block) * block * rowBytes;
    const buffer = device.createBuffer({
      label: row0 > 0 ? `${label} [${row0}..]` : label,
      size,
      // Uniform too: kernels of small models read a matrix that fits a uniform binding as a uniform array.
      usage: Usage.STORAGE | Usage.UNIFORM | Usage.COPY_DST,
    });
    let data: Uint8Array = new Uint8Array(n * rowBytes);
    await fill(data, row0, n, rowBytes);
    if (block > 1) {
      const units = blockRowUnits(new Uint32Array(data.buffer, data.byteOffset, data.byteLength / 4), n, rowBytes / 4, 2 * elem);
      data = new Uint8Array(units.buffer);
    } else if (isSliced(format)) {
      const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength / 4);
      data = new Uint8Array(sliceRowUnits(words, n, cols4 / 2, 2 * elem).buffer);
    }
    device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    parts.push({ buffer, row0, rows: n });
  }
  return { format, rows, cols, cols4, parts, bytes: rows * rowBytes };
}

/**
 * Uploads a row-major [rows, cols] array already in its storage format (f32 or f16 bits), row
 * after row or in row blocks: kernel tests and benchmarks.
 */
export function uploadArray(
  device: GPUDevice,
  data: Float32Array | Uint16Array,
  rows: number,
  cols: number,
  label: string,
  limit = bindingLimit(device),
  blocked = false,
  sliced = false,
): Promise<GpuMatrix> {
  const format = floatFormat(data instanceof Uint16Array, blocked, sliced);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const rowIn = cols * data.BYTES_PER_ELEMENT;
  return uploadRows(device, label, format, rows, cols, limit, async (dst, row0, n, rowBytes) => {
    for (let r = 0; r < n; r++) dst.set(bytes.subarray((row0 + r) * rowIn, (row0 + r + 1) * rowIn), r * rowBytes);
  });
}

/** Storage format of a tensor group: f16 stays f16; f32, bf16 and mixed groups become f32. */
function formatOf(tensors: CheckpointTensor[], blocked = false): FloatFormat {
  return floatFormat(
    tensors.every((t) => t.dtype === "F16"),
    blocked,
  );
}

async function storedBytes(ckpt: Checkpoint, t: CheckpointTensor, format: FloatFormat): Promise<Uint8Array> {
  const raw = await ckpt.read(t.name);
  if (floatBytes(format) === 4 && t.dtype !== "F32") return new Uint8Array(toFloat32(raw, t.dtype as "F16" | "BF16").buffer);
  return raw;
}

/**
 * Multiplies every row by a per-column scale in place: an RMSNorm's gain folded into the matrix the
 * norm feeds, so the kernel reads one input stream instead of two. f16 values are scaled in f32
 * and rounded once, as an f16 forward pass rounds the normalised activations.
 */
function scaleColumns(data: Uint8Array, format: FloatFormat, rows: number, rowElems: number, scale: Float32Array): void {
  if (floatBytes(format) === 4) {
    const v = new Float32Array(data.buffer, data.byteOffset, rows * rowElems);
    for (let r = 0; r < rows; r++) for (let c = 0; c < scale.length; c++) v[r * rowElems + c] *= scale[c];
  } else {
    const v = new Uint16Array(data.buffer, data.byteOffset, rows * rowElems);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < scale.length; c++) v[r * rowElems + c] = floatToHalf(halfToFloat(v[r * rowElems + c]) * scale[c]);
  }
}

/**
 * Uploads one or more [rows, cols] tensors stacked into one GPU matrix (q/k/v), one tensor at a
 * time, so the host holds at most one tensor (plus a part's padded copies) at once. With
 * `columnScale`, the gain of the RMSNorm feeding the matrix is folded in (scaleColumns); `blocked`
 * stores it in row blocks (f32b/f16b).
 */
export async function uploadMatrix(
  device: GPUDevice,
  ckpt: Checkpoint,
  tensors: { name: string; rows: number }[],
  cols: number,
  label: string,
  limit = bindingLimit(device),
  columnScale?: Float32Array,
  blocked = false,
): Promise<GpuMatrix> {
  const infos = tensors.map((p) => tensorOf(ckpt, p.name, [p.rows, cols]));
  const format = formatOf(infos, blocked);
  const elem = floatBytes(format);
  const rows = tensors.reduce((a, p) => a + p.rows, 0);
  // Tensors are read in order and cached one at a time: parts are filled in row order too.
  let current: { index: number; data: Uint8Array } | null = null;
  const tensorAt = async (row: number): Promise<{ data: Uint8Array; start: number }> => {
    let start = 0;
    for (let i = 0; i < infos.length; i++) {
      if (row < start + tensors[i].rows) {
        if (current?.index !== i) current = { index: i, data: await storedBytes(ckpt, infos[i], format) };
        return { data: current.data, start };
      }
      start += tensors[i].rows;
    }
    throw new Error("row out of range");
  };
  return uploadRows(device, label, format, rows, cols, limit, async (dst, row0, n, rowBytes) => {
    for (let r = 0; r < n; r++) {
      const { data, start } = await tensorAt(row0 + r);
      const src = (row0 + r - start) * cols * elem;
      dst.set(data.subarray(src, src + cols * elem), r * rowBytes);
    }
    if (columnScale) scaleColumns(dst, format, n, rowBytes / elem, columnScale);
  });
}

/** Reads a 1-D tensor (a norm's gain) as f32. */
export async function readVector(ckpt: Checkpoint, name: string, length: number): Promise<Float32Array> {
  const t = tensorOf(ckpt, name, [length]);
  return toFloat32(await ckpt.read(name), t.dtype as "F32" | "F16" | "BF16");
}

/** Uploads a vector as padded f32. */
export function uploadVector(device: GPUDevice, values: Float32Array, label: string): GPUBuffer {
  const padded = new Float32Array(padCols(values.length));
  padded.set(values);
  const buffer = device.createBuffer({ label, size: padded.byteLength, usage: Usage.STORAGE | Usage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, padded);
  return buffer;
}

/**
 * Uploads a [rows, cols] tensor transposed, as a [cols, rows] matrix: for W_down this puts each
 * neuron's weights in one contiguous row, which the down projection reads (and skips) by neuron;
 * `sliced` stores it in column slices (f32s/f16s), which CPU drivers' down projection streams.
 */
export async function uploadTransposed(
  device: GPUDevice,
  ckpt: Checkpoint,
  name: string,
  rows: number,
  cols: number,
  label: string,
  limit = bindingLimit(device),
  sliced = false,
): Promise<GpuMatrix> {
  const t = tensorOf(ckpt, name, [rows, cols]);
  const plain = formatOf([t]);
  const format = floatFormat(floatBytes(plain) === 2, false, sliced);
  const raw = await storedBytes(ckpt, t, plain);
  const aligned = raw.byteOffset % 4 === 0 ? raw : raw.slice();
  const src =
    plain === "f16"
      ? new Uint16Array(aligned.buffer, aligned.byteOffset, rows * cols)
      : new Float32Array(aligned.buffer, aligned.byteOffset, rows * cols);
  return uploadRows(device, label, format, cols, rows, limit, async (dst, row0, n, rowBytes) => {
    const elem = plain === "f16" ? 2 : 4;
    const out =
      plain === "f16"
        ? new Uint16Array(dst.buffer, dst.byteOffset, dst.byteLength / 2)
        : new Float32Array(dst.buffer, dst.byteOffset, dst.byteLength / 4);
    const stride = rowBytes / elem;
    for (let c = 0; c < n; c++) for (let r = 0; r < rows; r++) out[c * stride + r] = src[r * cols + row0 + c];
  });
}

export function destroyMatrix(m: GpuMatrix): void {
  for (const p of m.parts) p.buffer.destroy();
}
