/**
 * A harness that runs single ops of the engine on data chosen by a test or a benchmark: random
 * weights uploaded in the engine's layouts, activation buffers, the decode state, and the op
 * builders of src/engine/ops.ts with any variant forced.
 */
import type { GpuContext } from "../src/gpu/device.js";
import { Usage } from "../src/gpu/flags.js";
import { KernelCache } from "../src/gpu/kernel.js";
import type { KernelSource } from "../src/gpu/kernelsource.js";
import { Submitter } from "../src/gpu/submit.js";
import { VariantTable, type OpName } from "../src/gpu/variants.js";
import { encodeSteps, Ops, type ModelSizes, type OpShape, type Step } from "../src/engine/ops.js";
import { seededRandom } from "../src/engine/sampling.js";
import { bindingLimit, padCols, uploadArray, type GpuMatrix } from "../src/engine/weights.js";
import { floatToHalf, halfToFloat } from "../src/model/dtype.js";
import { dequantize, type QuantLinear } from "../src/model/gptq.js";
import { quantizeRtn } from "../src/quant/rtn.js";
import { uploadRowGroups, uploadTransposedGroups } from "../src/engine/quant-weights.js";

/** A random matrix as the GPU stores it, with the float values the kernels see (after f16 rounding). */
export interface HostMatrix {
  rows: number;
  cols: number;
  values: Float32Array;
  stored: Float32Array | Uint16Array;
  /** The codes, for a quantized matrix (values are then its dequantized weights). */
  quant?: QuantLinear;
}

/** Uniform in [-scale, scale], deterministic for a seed; f16 values are what the GPU will read. */
export function randomMatrix(rows: number, cols: number, f16: boolean, seed: number, scale = 1): HostMatrix {
  const random = seededRandom(seed);
  const n = rows * cols;
  const values = new Float32Array(n);
  const stored = f16 ? new Uint16Array(n) : values;
  for (let i = 0; i < n; i++) {
    const v = (random() * 2 - 1) * scale;
    if (stored instanceof Uint16Array) {
      stored[i] = floatToHalf(v);
      values[i] = halfToFloat(stored[i]);
    } else values[i] = v;
  }
  return { rows, cols, values, stored };
}

/** A weight quantization for ops tests and benchmarks: bits, group (null: per row), symmetric or not. */
export interface QuantKind {
  bits: 4 | 8;
  group: number | null;
  sym: boolean;
}

/** A random matrix quantized round-to-nearest; `values` are its dequantized weights, what the kernels compute with. */
export function randomQuantMatrix(rows: number, cols: number, q: QuantKind, seed: number): HostMatrix & { quant: QuantLinear } {
  const base = randomMatrix(rows, cols, false, seed);
  const quant = quantizeRtn(base.values, rows, cols, q.bits, q.group, q.sym);
  const values = dequantize(quant);
  return { rows, cols, values, stored: values, quant };
}

/** The transpose of a host matrix (W_down as the engine stores it). */
export function transpose(m: HostMatrix): HostMatrix {
  const t = (src: Float32Array | Uint16Array) => {
    const out = new (src.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(src.length);
    for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) out[c * m.rows + r] = src[r * m.cols + c];
    return out;
  };
  const values = t(m.values) as Float32Array;
  return { rows: m.cols, cols: m.rows, values, stored: m.stored instanceof Uint16Array ? t(m.stored) : values };
}

export function randomVector(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * random());
}

export class OpHarness {
  readonly ops: Ops;
  readonly state: GPUBuffer;
  readonly rope: GPUBuffer;
  private readonly made: GPUBuffer[] = [];
  private readonly submitter: Submitter;

  constructor(
    readonly gpu: GpuContext,
    source: KernelSource,
    readonly shape: OpShape,
    variants: Partial<Record<OpName, string>> = {},
    context = 64,
    kernels?: KernelCache,
  ) {
    this.state = this.buffer(new Uint32Array(4), "state");
    this.rope = this.buffer(ropeTable(context, shape.headDim), "rope");
    this.submitter = new Submitter(gpu);
    this.ops = new Ops(
      gpu,
      kernels ?? new KernelCache(gpu, source),
      new VariantTable(gpu, variants),
      { state: this.state, rope: this.rope },
      shape,
    );
  }

  /** A storage buffer holding `data` (zeros when a length is given), at least 64 KiB so that one-token kernels can read it as a uniform array. */
  buffer(data: Float32Array | Uint32Array | number, label = "harness"): GPUBuffer {
    const bytes = typeof data === "number" ? data * 4 : data.byteLength;
    const b = this.gpu.device.createBuffer({
      label,
      size: Math.max(65536, Math.ceil(bytes / 16) * 16),
      usage: Usage.STORAGE | Usage.UNIFORM | Usage.COPY_DST | Usage.COPY_SRC,
    });
    if (typeof data !== "number") this.gpu.device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    this.made.push(b);
    return b;
  }

  /** Rows of `width` floats at a padded stride, as the engine lays out activations (with a uniform window of slack after them). */
  rows(data: Float32Array[], stride: number, extraRows = 8): GPUBuffer {
    const out = new Float32Array((data.length + extraRows) * stride + 16384);
    data.forEach((row, t) => out.set(row, t * stride));
    return this.buffer(out);
  }

  /** A float matrix, row after row or in row blocks (f32b/f16b), split into parts under `maxBindingBytes`. */
  async matrix(m: HostMatrix, label = "weights", maxBindingBytes?: number, blocked = false, sliced = false): Promise<GpuMatrix> {
    const g = await uploadArray(
      this.gpu.device,
      m.stored,
      m.rows,
      m.cols,
      label,
      bindingLimit(this.gpu.device, maxBindingBytes),
      blocked,
      sliced,
    );
    for (const p of g.parts) this.made.push(p.buffer);
    return g;
  }

  /** A quantized matrix in the row-grouped layout (projections, gate, up), split into parts under `maxBindingBytes`. */
  quantRows(m: QuantLinear, label = "weights", maxBindingBytes?: number, blocked = false): GpuMatrix {
    const g = uploadRowGroups(this.gpu.device, [m], label, bindingLimit(this.gpu.device, maxBindingBytes), blocked);
    for (const p of g.parts) this.made.push(p.buffer);
    return g;
  }

  /** A quantized W_down [hidden, inter] as the transposed layout the down kernels read. */
  quantTransposed(m: QuantLinear, label = "downT", sliced = false): GpuMatrix {
    const g = uploadTransposedGroups(this.gpu.device, m, label, bindingLimit(this.gpu.device), sliced);
    for (const p of g.parts) this.made.push(p.buffer);
    return g;
  }

  setState(pos: number, ntok: number, step = 0): void {
    this.gpu.device.queue.writeBuffer(this.state, 0, new Uint32Array([pos, ntok, step, 0]));
  }

  /** Runs the steps once with `ntok` tokens in the pass. */
  async run(steps: Step[], ntok: number, times = 1): Promise<void> {
    await this.submitter.run("op harness", (encoder) => {
      const pass = encoder.beginComputePass();
      for (let i = 0; i < times; i++) encodeSteps(pass, steps, ntok);
      pass.end();
    });
  }

  async read(buffer: GPUBuffer, floats: number): Promise<Float32Array> {
    const [bytes] = await this.submitter.run("op harness readback", () => {}, [{ buffer, bytes: floats * 4 }]);
    return new Float32Array(bytes.buffer, bytes.byteOffset, floats);
  }

  async readU32(buffer: GPUBuffer, count: number): Promise<Uint32Array> {
    const [bytes] = await this.submitter.run("op harness readback", () => {}, [{ buffer, bytes: count * 4 }]);
    return new Uint32Array(bytes.buffer, bytes.byteOffset, count);
  }

  /** Row t of a [rows, stride] buffer read back, cut to `width`. */
  async readRows(buffer: GPUBuffer, rows: number, stride: number, width: number): Promise<Float32Array[]> {
    const all = await this.read(buffer, rows * stride);
    return Array.from({ length: rows }, (_, t) => all.slice(t * stride, t * stride + width));
  }

  destroy(): void {
    for (const b of this.made) b.destroy();
    this.submitter.destroy();
  }
}

/** (cos, sin) per position and frequency, as the engine's RoPE table. */
export function ropeTable(context: number, headDim: number, theta = 10000): Float32Array {
  const half = headDim / 2;
  const table = new Float32Array(context * half * 2);
  for (let pos = 0; pos < context; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos / theta ** ((2 * i) / headDim);
      table[(pos * half + i) * 2] = Math.cos(angle);
      table[(pos * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return table;
}

/** The activation strides the engine would use for these sizes. */
export function opShape(s: ModelSizes & { eps?: number; maxTokens?: number }): OpShape {
  return {
    ...s,
    maxTokens: s.maxTokens ?? 16,
    eps: s.eps ?? 1e-5,
    hiddenStride: padCols(s.hidden),
    interStride: padCols(s.inter),
    qkvStride: padCols((s.heads + 2 * s.kvHeads) * s.headDim),
    qStride: padCols(s.heads * s.headDim),
  };
}
