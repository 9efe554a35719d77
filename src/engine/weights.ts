import { Usage } from "../gpu/flags.js";
import { CatsError } from "../errors.js";
import type { Checkpoint, CheckpointTensor } from "../model/checkpoint.js";
import { toFloat32 } from "../model/dtype.js";

/** Storage format of a matrix on the GPU; the kernels pick weights_f32.wgsl or weights_f16.wgsl by it. */
export type GpuDtype = "f32" | "f16";

/** Row padding: every row is whole vec4s (f32) or whole packed quads (f16), so kernels never test a tail. */
export const ROW_ALIGN = 8;
export const padCols = (n: number): number => Math.ceil(n / ROW_ALIGN) * ROW_ALIGN;

export interface GpuMatrix {
  buffer: GPUBuffer;
  dtype: GpuDtype;
  rows: number;
  cols: number;
  /** Padded columns / 4: the row stride in vec4 (f32) or vec2<u32> (f16) units. */
  cols4: number;
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
  return t;
}

function checkBinding(device: GPUDevice, bytes: number, what: string): void {
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  if (bytes > limit) {
    throw new CatsError(
      `${what} needs a ${bytes}-byte GPU buffer but this adapter allows ${limit} bytes per binding; the model cannot run on it`,
    );
  }
}

/** Copies rows of `rowBytes` into rows of `paddedRowBytes` (zero tail), or returns the input when no padding is needed. */
function padRows(src: Uint8Array, rows: number, rowBytes: number, paddedRowBytes: number): Uint8Array {
  if (rowBytes === paddedRowBytes) return src;
  const out = new Uint8Array(rows * paddedRowBytes);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * rowBytes, (r + 1) * rowBytes), r * paddedRowBytes);
  return out;
}

/**
 * Uploads one or more [rows, cols] tensors stacked into one GPU matrix (q/k/v, gate/up), one tensor
 * at a time, so the host holds at most one tensor (plus its padded copy) at once. f16 stays f16;
 * f32, bf16 and mixed groups become f32.
 */
export async function uploadMatrix(
  device: GPUDevice,
  ckpt: Checkpoint,
  parts: { name: string; rows: number }[],
  cols: number,
  label: string,
): Promise<GpuMatrix> {
  const tensors = parts.map((p) => tensorOf(ckpt, p.name, [p.rows, cols]));
  const dtype: GpuDtype = tensors.every((t) => t.dtype === "F16") ? "f16" : "f32";
  const elemBytes = dtype === "f16" ? 2 : 4;
  const rows = parts.reduce((a, p) => a + p.rows, 0);
  const pc = padCols(cols);
  const bytes = rows * pc * elemBytes;
  checkBinding(device, bytes, `weight ${label}`);
  const buffer = device.createBuffer({ label, size: bytes, usage: Usage.STORAGE | Usage.COPY_DST });
  let rowOffset = 0;
  for (const t of tensors) {
    let raw = await ckpt.read(t.name);
    if (dtype === "f32" && t.dtype !== "F32") raw = new Uint8Array(toFloat32(raw, t.dtype).buffer);
    const data = padRows(raw, t.shape[0], cols * elemBytes, pc * elemBytes);
    device.queue.writeBuffer(buffer, rowOffset * pc * elemBytes, data.buffer, data.byteOffset, data.byteLength);
    rowOffset += t.shape[0];
  }
  return { buffer, dtype, rows, cols, cols4: pc / 4, bytes };
}

/** Uploads a 1-D tensor (a norm's gain) as padded f32. */
export async function uploadVector(device: GPUDevice, ckpt: Checkpoint, name: string, length: number): Promise<GPUBuffer> {
  const t = tensorOf(ckpt, name, [length]);
  const values = new Float32Array(padCols(length));
  values.set(toFloat32(await ckpt.read(name), t.dtype));
  const buffer = device.createBuffer({ label: name, size: values.byteLength, usage: Usage.STORAGE | Usage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, values);
  return buffer;
}

/**
 * Uploads a [rows, cols] tensor transposed, as a [cols, rows] matrix: for W_down this puts each
 * neuron's weights in one contiguous row, which the sparse down projection reads.
 */
export async function uploadTransposed(
  device: GPUDevice,
  ckpt: Checkpoint,
  name: string,
  rows: number,
  cols: number,
  label: string,
): Promise<GpuMatrix> {
  const t = tensorOf(ckpt, name, [rows, cols]);
  const dtype: GpuDtype = t.dtype === "F16" ? "f16" : "f32";
  const pr = padCols(rows);
  const raw = await ckpt.read(name);
  let data: Uint8Array;
  if (dtype === "f16") {
    const src = new Uint16Array(raw.buffer, raw.byteOffset, rows * cols);
    const out = new Uint16Array(cols * pr);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * pr + r] = src[r * cols + c];
    data = new Uint8Array(out.buffer);
  } else {
    const src = toFloat32(raw, t.dtype);
    const out = new Float32Array(cols * pr);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * pr + r] = src[r * cols + c];
    data = new Uint8Array(out.buffer);
  }
  checkBinding(device, data.byteLength, `weight ${label}`);
  const buffer = device.createBuffer({ label, size: data.byteLength, usage: Usage.STORAGE | Usage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return { buffer, dtype, rows: cols, cols: rows, cols4: pr / 4, bytes: data.byteLength };
}
