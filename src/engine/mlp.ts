import type { PipelineCache, Dispatch } from "../gpu/pipelines.js";
import { rowGrid, withSingleToken } from "../gpu/pipelines.js";
import { padCols, type GpuMatrix } from "./weights.js";

export interface MlpWeights {
  gate: GpuMatrix;
  up: GpuMatrix;
  down: GpuMatrix;
  /** W_down transposed ([inter][hidden]) for the sparse decode kernels; null when not sparse-capable. */
  downT: GpuMatrix | null;
}

/** Buffers an MLP block reads and writes; shared by all layers of a model. */
export interface MlpBuffers {
  state: GPUBuffer;
  /** Normalised input rows. */
  h: GPUBuffer;
  /** Dense activations [tokens][inter] between gate/up and down. */
  act: GPUBuffer;
  /** Residual stream: the block adds its output here. */
  x: GPUBuffer;
  /** Compact list of active neurons for sparse decode: index, activation, activation * up. */
  idx: GPUBuffer;
  val: GPUBuffer;
  actv: GPUBuffer;
  /** Per-layer active count of the current decode token (cleared by the stats kernel). */
  counts: GPUBuffer;
  /** Per-layer running total of active neurons, for reporting the sparsity reached. */
  totals: GPUBuffer;
  /** |silu(gate)| dump for calibration, or a small placeholder. */
  capture: GPUBuffer;
  /** Per-slice partial sums of the cpu-flavour sparse down projection: DOWN_SLICES rows of padded hidden. */
  partial: GPUBuffer;
}

/** Slices of the active list that the cpu-flavour sparse down projection spreads over workgroups. */
export const DOWN_SLICES = 16;
/** Largest padded hidden / 4 that down_sparse_rows keeps in private accumulators (its MAX_PER_LANE * 8). */
const ROWS_KERNEL_MAX_H4 = 2048;

export interface MlpShape {
  hidden: number;
  inter: number;
  layer: number;
  /** Float offset of this layer's slice of the capture buffer, or null when not capturing. */
  captureOffset: number | null;
}

const FLAG_MASKED = 1;
const FLAG_CAPTURE = 2;

/**
 * One layer's SwiGLU MLP as dispatches. `dense` serves passes of any size and applies the CATS
 * mask when a threshold is set; `sparse` serves single-token decode and reads only the active
 * rows of W_up and rows of W_down^T.
 */
export class MlpBlock {
  readonly dense: Dispatch[];
  readonly sparse: Dispatch[] | null;
  private readonly gateUpParams: GPUBuffer;
  private readonly gateParams: GPUBuffer | null = null;

  constructor(
    pipes: PipelineCache,
    private readonly device: GPUDevice,
    cpu: boolean,
    private readonly shape: MlpShape,
    w: MlpWeights,
    b: MlpBuffers,
  ) {
    const { hidden, inter, layer } = shape;
    const maxDim = device.limits.maxComputeWorkgroupsPerDimension;
    const flavour = cpu ? "rows" : "wg";
    this.gateUpParams = pipes.uniform(this.gateUpWords(null));
    const downParams = pipes.uniform([hidden, w.down.cols4, w.down.cols4, padCols(hidden), 0, 1, 0, 0]);
    this.dense = [
      withSingleToken(
        pipes,
        [
          "common",
          `weights_${w.gate.dtype}`,
          `weights_${w.up.dtype}_b`,
          "gate_up_params",
          ...(cpu ? [] : ["wg_reduce"]),
          `gate_up_${flavour}`,
        ],
        [w.gate.buffer, this.gateUpParams, b.state, b.h, b.act, b.capture, b.totals, w.up.buffer],
        rowGrid(cpu, maxDim, inter),
      ),
      withSingleToken(
        pipes,
        ["common", `weights_${w.down.dtype}`, "matmul_params", ...(cpu ? ["matmul_rows"] : ["wg_reduce", "matmul_wg"])],
        [w.down.buffer, downParams, b.state, b.act, b.x],
        rowGrid(cpu, maxDim, hidden),
      ),
    ];
    if (!w.downT) {
      this.sparse = null;
      return;
    }
    const entry = cpu ? "main_rows" : "main_wg";
    const gate = pipes.get(["common", `weights_${w.gate.dtype}`, "wg_reduce", "gate_sparse"], undefined, entry);
    this.gateParams = pipes.uniform(this.gateWords(0), [2]);
    const up = pipes.get(["common", `weights_${w.up.dtype}`, "wg_reduce", "up_sparse"], undefined, entry);
    const upParams = pipes.uniform([inter, w.up.cols4, layer, 0]);
    const h4 = padCols(hidden) / 4;
    const oneToken = rowGrid(cpu, maxDim, inter, 1);
    this.sparse = [
      {
        pipeline: gate,
        bindGroup: pipes.bind(gate, [w.gate.buffer, this.gateParams, undefined, b.h, b.idx, b.val, b.counts]),
        grid: oneToken,
      },
      { pipeline: up, bindGroup: pipes.bind(up, [w.up.buffer, upParams, undefined, b.h, b.idx, b.val, b.counts, b.actv]), grid: oneToken },
    ];
    if (cpu && h4 <= ROWS_KERNEL_MAX_H4) {
      const down = pipes.get(["common", `weights_${w.downT.dtype}`, "down_sparse_rows"]);
      const downParams = pipes.uniform([h4, layer, DOWN_SLICES, 0]);
      const reduce = pipes.get(["common", "sparse_reduce"]);
      const reduceParams = pipes.uniform([h4, DOWN_SLICES, 0, 0]);
      this.sparse.push(
        {
          pipeline: down,
          bindGroup: pipes.bind(down, [w.downT.buffer, downParams, undefined, b.idx, b.actv, b.counts, b.partial]),
          grid: () => [DOWN_SLICES, 1, 1],
        },
        {
          pipeline: reduce,
          bindGroup: pipes.bind(reduce, [undefined, reduceParams, undefined, b.partial, undefined, undefined, b.x]),
          grid: () => [Math.ceil(h4 / 64), 1, 1],
        },
      );
    } else {
      const down = pipes.get(["common", `weights_${w.downT.dtype}`, "down_sparse"]);
      const downParams = pipes.uniform([h4, layer, 0, 0]);
      this.sparse.push({
        pipeline: down,
        bindGroup: pipes.bind(down, [w.downT.buffer, downParams, undefined, b.idx, b.actv, b.counts, b.x]),
        grid: () => [Math.ceil(h4 / 64), 1, 1],
      });
    }
  }

  private gateUpWords(threshold: number | null): number[] {
    const { hidden, inter, layer, captureOffset } = this.shape;
    const cols4 = padCols(hidden) / 4;
    const flags = (threshold === null ? 0 : FLAG_MASKED) | (captureOffset === null ? 0 : FLAG_CAPTURE);
    return [inter, cols4, cols4, padCols(inter), threshold ?? 0, layer, captureOffset ?? 0, flags];
  }

  private gateWords(threshold: number): number[] {
    return [this.shape.inter, padCols(this.shape.hidden) / 4, threshold, this.shape.layer];
  }

  /** Sets the CATS threshold (null: plain dense). Takes effect for work submitted afterwards. */
  setThreshold(threshold: number | null): void {
    const words = this.gateUpWords(threshold);
    const data = new ArrayBuffer(32);
    const u = new Uint32Array(data);
    words.forEach((v, i) => (u[i] = v));
    new Float32Array(data)[4] = threshold ?? 0;
    this.device.queue.writeBuffer(this.gateUpParams, 0, data);
    if (this.gateParams) {
      const g = new ArrayBuffer(16);
      new Uint32Array(g).set([this.shape.inter, padCols(this.shape.hidden) / 4, 0, this.shape.layer]);
      new Float32Array(g)[2] = threshold ?? 0;
      this.device.queue.writeBuffer(this.gateParams, 0, g);
    }
  }
}

/** The stats dispatch that folds the per-token active counts into the running totals. */
export function sparseStatsDispatch(pipes: PipelineCache, layers: number, counts: GPUBuffer, totals: GPUBuffer): Dispatch {
  const pipeline = pipes.get(["common", "sparse_stats"]);
  const params = pipes.uniform([layers, 0, 0, 0]);
  return { pipeline, bindGroup: pipes.bind(pipeline, [undefined, params, counts, totals]), grid: () => [1, 1, 1] };
}
