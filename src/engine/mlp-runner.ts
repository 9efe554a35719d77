import type { GpuContext } from "../gpu/device.js";
import { MAP_READ, Usage } from "../gpu/flags.js";
import type { KernelSource } from "../gpu/kernelsource.js";
import { encodeDispatches, PipelineCache } from "../gpu/pipelines.js";
import { openCheckpoint } from "../model/checkpoint.js";
import { floatToHalf, halfToFloat } from "../model/dtype.js";
import { memoryFiles } from "../model/memoryfiles.js";
import { encodeSafetensors } from "../model/safetensors-writer.js";
import { DOWN_SLICES, MlpBlock, sparseStatsDispatch } from "./mlp.js";
import { seededRandom } from "./sampling.js";
import { padCols, uploadMatrix, uploadTransposed, type GpuMatrix } from "./weights.js";

export type MlpPath = "dense" | "sparse";

/** One MLP block with random weights on its own, for kernel tests and microbenchmarks. */
export interface MlpRunner {
  hidden: number;
  inter: number;
  /** The weights as the GPU sees them (f16 rounding applied), row-major [rows][cols]. */
  values: { gate: Float32Array; up: Float32Array; down: Float32Array };
  weights: { gate: GpuMatrix; up: GpuMatrix; down: GpuMatrix; downT: GpuMatrix };
  /** Loads a token's normalised input h and residual x0, and the threshold (null: plain dense). */
  load(h: ArrayLike<number>, x0: ArrayLike<number>, threshold: number | null): void;
  /** Encodes `calls` MLP evaluations on the loaded input into one submission and waits for it. */
  time(calls: number, path: MlpPath): Promise<void>;
  /** Runs once on the loaded input and returns the residual after the block. */
  run(path: MlpPath): Promise<Float32Array>;
  /** Active neurons summed over sparse calls since the last read. */
  takeActiveTotal(): Promise<number>;
  destroy(): void;
}

function randomWeights(
  rows: number,
  cols: number,
  f16: boolean,
  random: () => number,
  scale: number,
): { data: Uint8Array; values: Float32Array } {
  const n = rows * cols;
  if (!f16) {
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = (random() * 2 - 1) * scale;
    return { data: new Uint8Array(values.buffer), values };
  }
  const bits = new Uint16Array(n);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    bits[i] = floatToHalf((random() * 2 - 1) * scale);
    values[i] = halfToFloat(bits[i]);
  }
  return { data: new Uint8Array(bits.buffer), values };
}

export async function createMlpRunner(
  gpu: GpuContext,
  kernels: KernelSource,
  shape: { hidden: number; inter: number; f16: boolean; seed: number },
): Promise<MlpRunner> {
  const { hidden: H, inter: I } = shape;
  const random = seededRandom(shape.seed);
  // Uniform weights scaled by 1/sqrt(fan-in) keep activations O(1) at any size.
  const gate = randomWeights(I, H, shape.f16, random, Math.sqrt(3 / H));
  const up = randomWeights(I, H, shape.f16, random, Math.sqrt(3 / H));
  const down = randomWeights(H, I, shape.f16, random, Math.sqrt(3 / I));
  const dtype = shape.f16 ? "F16" : "F32";
  const config = {
    architectures: ["LlamaForCausalLM"],
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    head_dim: 4,
    max_position_embeddings: 8,
    vocab_size: 8,
  };
  const st = encodeSafetensors([
    { name: "gate", dtype, shape: [I, H], data: gate.data },
    { name: "up", dtype, shape: [I, H], data: up.data },
    { name: "down", dtype, shape: [H, I], data: down.data },
  ]);
  const ckpt = await openCheckpoint(memoryFiles("random-mlp", { "config.json": JSON.stringify(config), "model.safetensors": st }));
  const d = gpu.device;
  const weights = {
    gate: await uploadMatrix(d, ckpt, [{ name: "gate", rows: I }], H, "gate"),
    up: await uploadMatrix(d, ckpt, [{ name: "up", rows: I }], H, "up"),
    down: await uploadMatrix(d, ckpt, [{ name: "down", rows: H }], I, "down"),
    downT: await uploadTransposed(d, ckpt, "down", H, I, "down^T"),
  };
  await ckpt.close();
  const made: GPUBuffer[] = [];
  const make = (n: number) => {
    const b = d.createBuffer({ size: Math.max(16, n * 4), usage: Usage.STORAGE | Usage.COPY_DST | Usage.COPY_SRC });
    made.push(b);
    return b;
  };
  const b = {
    state: make(4),
    h: make(4 * padCols(H)),
    act: make(4 * padCols(I)),
    x: make(4 * padCols(H)),
    idx: make(I),
    val: make(I),
    actv: make(I),
    counts: make(1),
    totals: make(1),
    capture: make(4),
    partial: make(DOWN_SLICES * padCols(H)),
  };
  const pipes = new PipelineCache(gpu, kernels);
  const mlp = new MlpBlock(pipes, d, gpu.flavour === "cpu", { hidden: H, inter: I, layer: 0, captureOffset: null }, weights, b);
  const stats = sparseStatsDispatch(pipes, 1, b.counts, b.totals);
  const lists: Record<MlpPath, ReturnType<typeof Array.prototype.slice>> = { dense: mlp.dense, sparse: [...mlp.sparse!, stats] };
  const padded = (v: ArrayLike<number>, n: number) => {
    const out = new Float32Array(padCols(n));
    out.set(Array.from(v));
    return out;
  };
  let x0 = new Float32Array(padCols(H));

  async function read(buffer: GPUBuffer, bytes: number, enc: GPUCommandEncoder): Promise<ArrayBuffer> {
    const staging = d.createBuffer({ size: bytes, usage: MAP_READ | Usage.COPY_DST });
    enc.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
    d.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = staging.getMappedRange().slice(0);
    staging.destroy();
    gpu.check("MLP runner");
    return out;
  }

  return {
    hidden: H,
    inter: I,
    values: { gate: gate.values, up: up.values, down: down.values },
    weights,
    load(h, x, threshold) {
      x0 = padded(x, H);
      d.queue.writeBuffer(b.state, 0, new Uint32Array([0, 1, 0, 0]));
      d.queue.writeBuffer(b.h, 0, padded(h, H));
      mlp.setThreshold(threshold);
    },
    async time(calls, path) {
      d.queue.writeBuffer(b.x, 0, x0);
      const enc = d.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (let i = 0; i < calls; i++) encodeDispatches(pass, lists[path], 1);
      pass.end();
      d.queue.submit([enc.finish()]);
      await d.queue.onSubmittedWorkDone();
    },
    async run(path) {
      d.queue.writeBuffer(b.x, 0, x0);
      const enc = d.createCommandEncoder();
      const pass = enc.beginComputePass();
      encodeDispatches(pass, lists[path], 1);
      pass.end();
      return new Float32Array(await read(b.x, padCols(H) * 4, enc)).slice(0, H);
    },
    async takeActiveTotal() {
      const total = new Uint32Array(await read(b.totals, 4, d.createCommandEncoder()))[0];
      d.queue.writeBuffer(b.totals, 0, new Uint32Array(1));
      return total;
    },
    destroy() {
      for (const m of [...Object.values(weights).map((w) => w.buffer), ...made]) m.destroy();
    },
  };
}
