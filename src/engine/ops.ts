import type { GpuContext } from "../gpu/device.js";
import type { BoundKernel, BufferAt, Kernel, KernelArgs, KernelCache } from "../gpu/kernel.js";
import { groupsPerWorkgroup, UNIFORM_INPUT_VEC4S, type OpName, type VariantTable } from "../gpu/variants.js";
import type { GpuMatrix } from "./weights.js";
import { isFloatFormat, isRowQuantized, isSliced, isTransposedQuantized } from "../gpu/wgsl.js";
import { CatsError } from "../errors.js";
import { Usage } from "../gpu/flags.js";

export type Grid = [number, number, number];

/** A view of what a step writes, per token: for the debug path, which reads intermediates by name. */
export interface TensorView {
  buffer: GPUBuffer;
  /** Floats from one token's row to the next. */
  stride: number;
  /** Meaningful floats per row. */
  width: number;
  /** Rows written: the pass's tokens, or 1 for last-token outputs. */
  rows: "tokens" | 1;
}

/** One dispatch of a forward pass, built once at load; its grid depends on the pass's token count. */
export interface Step {
  name: string;
  /**
   * The kernel, bound: one binding covering every token of the pass (grid z walks the token
   * tiles), or with `tileTokens` one binding per tile of that many tokens (an input read as a
   * uniform array is bound at its tile's row), dispatched in turn for the tiles a pass needs.
   */
  bounds: BoundKernel[];
  tileTokens?: number;
  grid: (ntok: number) => Grid;
  writes: TensorView;
  /** The CATS gate of a layer: its threshold is set between submissions. */
  gateOfLayer?: number;
}

/** The shape key attention variants are tuned at: query heads / kv heads x head_dim. */
export function attentionShape(s: { heads: number; kvHeads: number; headDim: number }): string {
  return `${s.heads}/${s.kvHeads} heads x ${s.headDim}`;
}

export function encodeSteps(pass: GPUComputePassEncoder, steps: readonly Step[], ntok: number): void {
  for (const s of steps) {
    const grid = s.grid(ntok);
    if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) continue;
    const count = s.tileTokens ? cdiv(ntok, s.tileTokens) : 1;
    for (let i = 0; i < count; i++) s.bounds[i].encode(pass, grid);
  }
}

/** Rewrites params of a step, every tile's binding alike. */
export function setStepParams(step: Step, values: Record<string, number>): void {
  for (const b of step.bounds) b.setParams(values);
}

/** The buffers every op reads: the decode state and the RoPE table. */
export interface OpBuffers {
  state: GPUBuffer;
  rope: GPUBuffer;
}

/** A model's dimensions. */
export interface ModelSizes {
  hidden: number;
  inter: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
}

/** Model dimensions the ops need, with the norm's epsilon and the activation buffers' layout. */
export interface OpShape extends ModelSizes {
  eps: number;
  /** Token rows of the activation buffers: the most one batched pass holds. */
  maxTokens: number;
  /** Padded strides (floats) of the activation rows. */
  hiddenStride: number;
  interStride: number;
  qkvStride: number;
  qStride: number;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

type VariantConsts = Record<string, number | boolean> & { TM: number; XU?: boolean };

/** Quantized row-grouped matrices (kernels/qrows.wgsl): projections read them a chunk of codes at a time. */

/** A layer's matrices from the attention output on (forward.ts's LayerWeights). */
export interface OMlpWeights {
  o: GpuMatrix;
  gate: GpuMatrix;
  up: GpuMatrix;
  /** W_up for the CATS decode steps where it differs from `up` (forward.ts's LayerWeights.upCats). */
  upCats?: GpuMatrix | null;
  downT: GpuMatrix;
  mlpGain: GPUBuffer | null;
}

/** A layer's matrices and KV cache, as a whole-layer decode kernel reads them (forward.ts's LayerWeights). */
export interface DecodeLayerWeights extends OMlpWeights {
  qkv: GpuMatrix;
  qkvGain: GPUBuffer | null;
  k: GPUBuffer;
  v: GPUBuffer;
}

/** The shape the whole-layer choice is keyed by. */
export const layerShape = (w: DecodeLayerWeights): string => `${matrixShape(w.qkv)} + ${oMlpShape(w)}`;

/**
 * Whether layer.wgsl can run a decode layer: o_mlp.wgsl's conditions, W_qkv a float matrix in one
 * binding, and at most 1024 q, k and v rows.
 */
export function layerFits(w: DecodeLayerWeights, s: ModelSizes): boolean {
  const rows = (s.heads + 2 * s.kvHeads) * s.headDim;
  return oMlpFits(w, s) && w.qkv.parts.length === 1 && isFloatFormat(w.qkv.format) && rows <= 1024;
}

/** The shape the o_proj + MLP choice is keyed by. */
export const oMlpShape = (w: OMlpWeights): string => `${matrixShape(w.o)} + ${matrixShape(w.gate)}`;

/**
 * Whether o_mlp.wgsl can run a layer: float matrices in one binding each, and vectors that fit one
 * subgroup's registers (o and x up to 512 wide, act up to 2048).
 */
export function oMlpFits(w: OMlpWeights, s: ModelSizes): boolean {
  const matrices = [w.o, w.gate, w.up, w.downT];
  return (
    matrices.every((m) => m.parts.length === 1 && isFloatFormat(m.format)) &&
    !isSliced(w.downT.format) &&
    s.hidden <= 512 &&
    s.heads * s.headDim <= 512 &&
    s.inter <= 2048
  );
}

/** The shape a tuned variant choice is keyed by: rows x cols and the storage format. */
export const matrixShape = (w: GpuMatrix): string => `${w.rows}x${w.cols} ${w.format}`;

/**
 * The shape a gate/up choice is keyed by: the gate's, and W_up's format where it is stored otherwise
 * (row after row beside a gate in row blocks), since which variant streams fastest depends on both.
 */
export const gateUpShape = (gate: GpuMatrix, up: GpuMatrix): string =>
  up.format === gate.format ? matrixShape(gate) : `${matrixShape(gate)} up ${up.format}`;

/**
 * Builds the steps of a forward pass: one builder per op, each binding its kernel by name with
 * the variant the table picks for this adapter. Matrices split across bindings become one step
 * per part.
 */
export class Ops {
  private splitWalk?: { partials: GPUBuffer; arrived: GPUBuffer };

  constructor(
    private readonly gpu: GpuContext,
    private readonly kernels: KernelCache,
    private readonly variants: VariantTable,
    private readonly buf: OpBuffers,
    private readonly shape: OpShape,
  ) {}

  /**
   * The one-dispatch split walk's buffers (down1.wgsl, ONE): `vec4s` partial sums and a zeroed
   * arrival count per workgroup, shared by every down step of these ops (they run one after another;
   * each dispatch leaves the counts at zero), grown when a larger one asks.
   */
  private downScratch(vec4s: number, workgroups: number): { partials: GPUBuffer; arrived: GPUBuffer } {
    const have = this.splitWalk;
    if (have && have.partials.size >= vec4s * 16 && have.arrived.size >= workgroups * 4) return have;
    const device = this.gpu.device;
    const size = (bytes: number, old?: GPUBuffer) => Math.max(bytes, old?.size ?? 0, 16);
    this.splitWalk = {
      partials: device.createBuffer({ label: "down partial sums", size: size(vec4s * 16, have?.partials), usage: Usage.STORAGE }),
      arrived: device.createBuffer({ label: "down arrivals", size: size(workgroups * 4, have?.arrived), usage: Usage.STORAGE }),
    };
    return this.splitWalk;
  }

  /** Workgroup grid for `count` workgroups: past the per-dimension limit the rest spills into y. */
  private spill(count: number, z: number): Grid {
    const max = this.gpu.device.limits.maxComputeWorkgroupsPerDimension;
    return [Math.min(count, max), cdiv(count, max), z];
  }

  private lanesGrid(
    consts: Record<string, number | boolean>,
    rows: number,
    tokensPerTile: (ntok: number) => number,
  ): (ntok: number) => Grid {
    const groups = cdiv(rows, consts.R as number);
    const workgroups = cdiv(groups, groupsPerWorkgroup(this.gpu, consts));
    return (ntok) => this.spill(workgroups, tokensPerTile(ntok));
  }

  /** A step of one dispatch: `kernel` bound to `args` once for every token of the pass. */
  private single(name: string, kernel: Kernel, args: KernelArgs, grid: Step["grid"], writes: TensorView): Step {
    return { name, bounds: [kernel.bind(args, name)], grid, writes };
  }

  /** x[t] = E[tokens[t]] */
  embed(table: GpuMatrix, tokens: GPUBuffer, x: GPUBuffer): Step[] {
    const kernel = this.kernels.get({ file: "embed", weights: { W: table.format } });
    return table.parts.map((part) => ({
      name: "embed",
      bounds: [
        kernel.bind(
          {
            params: {
              rows: part.rows,
              row_offset: part.row0,
              cols4: table.cols4,
              x_stride4: this.shape.hiddenStride / 4,
              vocab: this.shape.vocab,
            },
            state: this.buf.state,
            tokens,
            X: x,
            W: part.buffer,
          },
          "embed",
        ),
      ],
      grid: (ntok) => [cdiv(table.cols4, 64), ntok, 1],
      writes: { buffer: x, stride: this.shape.hiddenStride, width: this.shape.hidden, rows: "tokens" },
    }));
  }

  /**
   * The constants of the variant chosen for `op` on a matrix of this shape, reading the input as a
   * uniform array (XU) only where it fits one.
   */
  private consts(op: OpName, w: GpuMatrix, inputVec4s: number, batch: boolean, shape = matrixShape(w)): VariantConsts {
    const c = this.variants.pick(op, shape).consts as VariantConsts;
    // A uniform-array input holds TM rows, and each tile's row must sit at an offset the adapter can bind.
    const tileBytes = c.TM * inputVec4s * 16;
    const fits =
      c.TM * inputVec4s <= UNIFORM_INPUT_VEC4S && (!batch || tileBytes % this.gpu.device.limits.minUniformBufferOffsetAlignment === 0);
    return c.XU && !fits ? { ...c, XU: false, W8: false } : c;
  }

  /**
   * y = s * x W^T (+ y): a projection with, optionally, the RMSNorm that feeds it fused in (`norm`;
   * its gain folded into W, or given as `gain` for a tied lm_head) and a residual add into y.
   */
  project(
    name: string,
    w: GpuMatrix,
    x: GPUBuffer,
    y: GPUBuffer,
    o: { batch: boolean; norm?: boolean; gain?: GPUBuffer | null; residual?: boolean; xStride: number; yStride: number },
  ): Step[] {
    const op: OpName = o.batch ? "matmul" : "matvec";
    const consts = { ...this.consts(op, w, o.xStride / 4, o.batch), GAIN: Boolean(o.gain), QUANT: isRowQuantized(w.format) };
    const kernel = this.kernels.get({ file: "matmul", weights: { W: w.format }, consts });
    return w.parts.map((part) => ({
      name,
      ...this.tiled(consts, o.batch, o.xStride, x, (token0, X) =>
        kernel.bind(
          {
            params: {
              rows: part.rows,
              row_offset: part.row0,
              cols: w.cols,
              cols4: w.cols4,
              x_stride4: o.xStride / 4,
              y_stride: o.yStride,
              norm: o.norm ? 1 : 0,
              residual: o.residual ? 1 : 0,
              token0,
              eps: this.shape.eps,
            },
            state: this.buf.state,
            X,
            ...(o.gain ? { G: o.gain } : {}),
            Y: y,
            W: part.buffer,
          },
          name,
        ),
      ),
      grid: this.lanesGrid(consts, part.rows, (ntok) => (consts.XU ? 1 : cdiv(ntok, consts.TM))),
      writes: { buffer: y, stride: o.yStride, width: w.rows, rows: "tokens" },
    }));
  }

  /**
   * The bindings of a projection step: one covering the pass, or with a uniform-array input (XU)
   * one per tile of TM tokens of a batched pass, X bound at the tile's first row.
   */
  private tiled(
    consts: VariantConsts,
    batch: boolean,
    xStride: number,
    x: GPUBuffer,
    bind: (token0: number, X: BufferAt) => BoundKernel,
  ): { bounds: BoundKernel[]; tileTokens?: number } {
    // One token (a decode step, a prefill's last row) reads row 0 whatever the pass's token count.
    if (!consts.XU || !batch) return { bounds: [bind(0, { buffer: x, offset: 0 })] };
    const tiles = cdiv(this.shape.maxTokens, consts.TM);
    const bounds = Array.from({ length: tiles }, (_, i) => bind(i * consts.TM, { buffer: x, offset: i * consts.TM * xStride * 4 }));
    return { bounds, tileTokens: consts.TM };
  }

  /** y[0] = x[ntok - 1]: the last position of a prefill, for lm_head to read as a decode step does. */
  lastRow(x: GPUBuffer, y: GPUBuffer): Step {
    const stride4 = this.shape.hiddenStride / 4;
    return this.single(
      "last row",
      this.kernels.get({ file: "last_row" }),
      { params: { stride4 }, state: this.buf.state, X: x, Y: y },
      () => [cdiv(stride4, 64), 1, 1],
      { buffer: y, stride: this.shape.hiddenStride, width: this.shape.hidden, rows: 1 },
    );
  }

  /** Batched passes: q, k = rope(q, k) for every token; k, v into this layer's cache. */
  ropeKv(name: string, qkv: GPUBuffer, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer): Step {
    const s = this.shape;
    const params = {
      n_heads: s.heads,
      n_kv: s.kvHeads,
      head_dim: s.headDim,
      qkv_stride: s.qkvStride,
      q_stride: s.qStride,
      kv_stride: s.kvHeads * s.headDim,
    };
    return this.single(
      name,
      this.kernels.get({ file: "rope_kv" }),
      { params, state: this.buf.state, QKV: qkv, rope: this.buf.rope, Q: q, K: k, V: v },
      (ntok) => [cdiv(s.heads + s.kvHeads, 32), ntok, 1],
      { buffer: q, stride: s.qStride, width: s.heads * s.headDim, rows: "tokens" },
    );
  }

  /** Batched passes: o = softmax(q k^T / sqrt(d) + causal mask) v, grouped-query heads. */
  attention(name: string, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer, o: GPUBuffer): Step {
    const s = this.shape;
    const params = {
      n_heads: s.heads,
      group: s.heads / s.kvHeads,
      q_stride4: s.qStride / 4,
      kv_stride4: (s.kvHeads * s.headDim) / 4,
      o_stride4: s.qStride / 4,
      scale: 1 / Math.sqrt(s.headDim),
    };
    return this.single(
      name,
      this.kernels.get({
        file: "attention",
        consts: { HD4: s.headDim / 4, ...this.variants.pick("attention_mat", attentionShape(s)).consts },
      }),
      { params, state: this.buf.state, Q: q, K: k, V: v, O: o },
      (ntok) => [cdiv(ntok, 8), s.heads, 1],
      { buffer: o, stride: s.qStride, width: s.heads * s.headDim, rows: "tokens" },
    );
  }

  /** One token: q, k = rope(q, k); k, v into the cache; o = softmax(q K^T / sqrt(d)) V. One dispatch. */
  attentionDecode(name: string, qkv: GPUBuffer, k: GPUBuffer, v: GPUBuffer, o: GPUBuffer): Step {
    const s = this.shape;
    const { SERIAL, ...consts } = this.variants.pick("attention_vec", attentionShape(s)).consts;
    const params = { n_heads: s.heads, n_kv: s.kvHeads, kv_stride: s.kvHeads * s.headDim, scale: 1 / Math.sqrt(s.headDim) };
    return this.single(
      name,
      this.kernels.get({ file: SERIAL ? "attention_serial" : "attention_decode", consts: { ...consts, HD: s.headDim } }),
      { params, state: this.buf.state, QKV: qkv, rope: this.buf.rope, K: k, V: v, O: o },
      () => (SERIAL ? [cdiv(s.heads, consts.WG as number), 1, 1] : [s.kvHeads, 1, 1]),
      { buffer: o, stride: s.qStride, width: s.heads * s.headDim, rows: "tokens" },
    );
  }

  /**
   * One decode token up to o_proj: qkv = rmsnorm(x) W_qkv, RoPE, the KV write and attention. Either
   * one dispatch (qkv_attention.wgsl: a workgroup per kv head computes its own q, k, v rows) or two
   * (the qkv projection into `qkv`, then attentionDecode), as the variant table picks; a W_qkv split
   * across bindings always takes two.
   */
  qkvAttention(
    at: (op: string) => string,
    w: GpuMatrix,
    x: GPUBuffer,
    o: { gain: GPUBuffer | null; qkv: GPUBuffer; k: GPUBuffer; v: GPUBuffer; out: GPUBuffer },
  ): Step[] {
    const s = this.shape;
    const { FUSED } = this.variants.pick("qkv_attention_vec", matrixShape(w)).consts;
    if (!FUSED || w.parts.length > 1) {
      return [
        ...this.project(at("qkv"), w, x, o.qkv, { batch: false, norm: true, gain: o.gain, xStride: s.hiddenStride, yStride: s.qkvStride }),
        this.attentionDecode(at("attention"), o.qkv, o.k, o.v, o.out),
      ];
    }
    const consts: VariantConsts = {
      ...this.consts("qkv_attention_vec", w, s.hiddenStride / 4, false),
      GAIN: Boolean(o.gain),
      QUANT: isRowQuantized(w.format),
      HD: s.headDim,
      QG: s.heads / s.kvHeads,
    };
    // The attention either takes the q heads one at a time across the lanes (attend.wgsl) or gives lanes whole heads.
    const kernel = this.kernels.get({
      file: "qkv_attention",
      weights: { W: w.format },
      consts: { ...consts, ATTEND_PER_HEAD: !consts.SERIAL && !consts.SLICED },
    });
    const params = {
      n_heads: s.heads,
      n_kv: s.kvHeads,
      cols: w.cols,
      cols4: w.cols4,
      x_stride4: s.hiddenStride / 4,
      scale: 1 / Math.sqrt(s.headDim),
      eps: s.eps,
    };
    const name = at("qkv+attention");
    const args = {
      params,
      state: this.buf.state,
      X: { buffer: x, offset: 0 },
      rope: this.buf.rope,
      K: o.k,
      V: o.v,
      O: o.out,
      W: w.parts[0].buffer,
    };
    return [
      this.single(name, kernel, o.gain ? { ...args, G: o.gain } : args, () => [s.kvHeads, 1, 1], {
        buffer: o.out,
        stride: s.qStride,
        width: s.heads * s.headDim,
        rows: "tokens",
      }),
    ];
  }

  /**
   * The copy of W_up a gate/up step reads: a CATS decode step its own, row after row, where the model
   * has one (OMlpWeights.upCats); every other step `up`. (A CATS step reading the copy in row blocks
   * instead, which fetches nearly every line and skips only the arithmetic, measured 0.98x / 0.96x
   * the whole `llama2-7b-2l` f16 decode at 50% / 70%, 1.03x / 0.98x at llama-110m f16 and 1.06x /
   * 1.00x at llama-110m q4; the tuner, timing the step alone, picked it wrongly at 7B, so it is not offered.)
   */
  static upFor(w: Pick<OMlpWeights, "up" | "upCats">, cats: boolean): GpuMatrix {
    return (cats && w.upCats) || w.up;
  }

  /**
   * act = silu(h W_gate^T) * (h W_up^T), h = rmsnorm(x) * gain, with the CATS mask of this
   * layer (set later through the step's threshold), active-neuron counting, and with a capture
   * buffer the calibration dump of |silu(h W_gate^T)|.
   */
  gateUp(
    name: string,
    gate: GpuMatrix,
    up: GpuMatrix,
    x: GPUBuffer,
    act: GPUBuffer,
    o: {
      batch: boolean;
      layer: number;
      totals: GPUBuffer;
      capture: GPUBuffer;
      captureOffset: number | null;
      gain?: GPUBuffer | null;
      /** A decode step whose MLP CATS masks: the variant chosen for masked steps. */
      cats?: boolean;
    },
  ): Step[] {
    const op: OpName = o.batch ? "gate_up_mat" : o.cats ? "gate_up_cats" : "gate_up_vec";
    const s = this.shape;
    if (isRowQuantized(gate.format) !== isRowQuantized(up.format)) throw new CatsError("gate and up must be both quantized or both float");
    if (gate.parts.length !== up.parts.length || gate.parts.some((g, i) => g.row0 !== up.parts[i].row0 || g.rows !== up.parts[i].rows)) {
      throw new CatsError(`${name}: gate and up are split across bindings at different rows`);
    }
    const consts = {
      ...this.consts(op, gate, s.hiddenStride / 4, o.batch, gateUpShape(gate, up)),
      GAIN: Boolean(o.gain),
      QUANT: isRowQuantized(gate.format),
    };
    const kernel = this.kernels.get({ file: "gate_up", weights: { W: gate.format, U: up.format }, consts });
    return gate.parts.map((part, i) => ({
      name,
      gateOfLayer: o.layer,
      ...this.tiled(consts, o.batch, s.hiddenStride, x, (token0, X) =>
        kernel.bind(
          {
            params: {
              rows: part.rows,
              row_offset: part.row0,
              inter: s.interStride,
              cols: gate.cols,
              cols4: gate.cols4,
              x_stride4: s.hiddenStride / 4,
              layer: o.layer,
              capture: o.captureOffset === null ? 0 : 1,
              capture_offset: o.captureOffset ?? 0,
              threshold: -1,
              token0,
              eps: s.eps,
            },
            state: this.buf.state,
            X,
            act,
            capture: o.capture,
            totals: o.totals,
            ...(o.gain ? { G: o.gain } : {}),
            W: part.buffer,
            U: up.parts[i].buffer,
          },
          name,
        ),
      ),
      grid: this.lanesGrid(consts, part.rows, (ntok) => (consts.XU ? 1 : cdiv(ntok, consts.TM))),
      writes: { buffer: act, stride: s.interStride, width: s.inter, rows: "tokens" },
    }));
  }

  /**
   * From the attention output to the next layer's input:
   *   x += o W_o;  h = rmsnorm(x);  act = silu(h W_gate) * (h W_up), CATS mask;  x += act W_down.
   * Three steps (o_proj, gate_up, down), or one where the variant table fuses them and the layer is
   * small enough for one 8-lane subgroup (o_mlp.wgsl): decode steps of float models up to 512 wide.
   */
  oMlp(
    at: (op: string) => string,
    w: OMlpWeights,
    b: { o: GPUBuffer; x: GPUBuffer; act: GPUBuffer },
    o: { batch: boolean; cats?: boolean; layer: number; totals: GPUBuffer; capture: GPUBuffer; captureOffset: number | null },
  ): Step[] {
    const s = this.shape;
    if (o.batch || !this.variants.pick("o_mlp_vec", oMlpShape(w)).consts.FUSED || !oMlpFits(w, s)) {
      return [
        ...this.project(at("o_proj"), w.o, b.o, b.x, { batch: o.batch, residual: true, xStride: s.qStride, yStride: s.hiddenStride }),
        ...this.gateUp(at("gate_up"), w.gate, Ops.upFor(w, o.cats === true), b.x, b.act, { ...o, gain: w.mlpGain }),
        ...this.down(at("down"), w.downT, b.act, b.x, { batch: o.batch, cats: o.cats }),
      ];
    }
    return [
      this.tailStep(
        at("o_proj+mlp"),
        "o_mlp",
        w,
        { consts: { CATS: o.cats === true }, buffers: { O: b.o, X: b.x, totals: o.totals } },
        o.layer,
      ),
    ];
  }

  /**
   * One decode token's whole layer as one dispatch of one 8-lane subgroup (layer.wgsl), where the
   * variant table fuses it and the layer fits (layerFits); otherwise null, and the layer runs as
   * qkvAttention + oMlp.
   */
  fusedLayer(
    name: string,
    w: DecodeLayerWeights,
    b: { o: GPUBuffer; x: GPUBuffer },
    o: { layer: number; totals: GPUBuffer; cats?: boolean },
  ): Step | null {
    const s = this.shape;
    if (!this.variants.pick("layer_vec", layerShape(w)).consts.FUSED || !layerFits(w, s)) return null;
    const QKV = (s.heads + 2 * s.kvHeads) * s.headDim;
    const QB = cdiv(QKV, 8);
    return this.tailStep(
      name,
      "layer",
      w,
      {
        matrices: { WQKV: w.qkv },
        consts: {
          QKV,
          QB,
          QM: cdiv(QB, 8),
          NQ: s.heads,
          NKV: s.kvHeads,
          HD: s.headDim,
          QG: s.heads / s.kvHeads,
          GAIN_QKV: w.qkvGain !== null,
          CATS: o.cats === true,
        },
        params: { scale: 1 / Math.sqrt(s.headDim) },
        buffers: {
          ...{ state: this.buf.state, X: b.x, totals: o.totals, rope: this.buf.rope, K: w.k, V: w.v, O: b.o },
          ...(w.qkvGain ? { GQ: w.qkvGain } : {}),
        },
      },
      o.layer,
    );
  }

  /**
   * A one-subgroup decode step ending in o_mlp_tail.wgsl (o_mlp.wgsl, layer.wgsl): one workgroup
   * that adds into x, its matrices bound by name (as uniform arrays where all of them fit), with the
   * tail's constants and params and the kernel's own.
   */
  private tailStep(
    name: string,
    file: string,
    w: OMlpWeights,
    own: {
      matrices?: Record<string, GpuMatrix>;
      consts?: Record<string, number | boolean>;
      params?: Record<string, number>;
      buffers: Record<string, GPUBuffer> & { X: GPUBuffer };
    },
    layer: number,
  ): Step {
    const s = this.shape;
    const matrices: Record<string, GpuMatrix> = { ...own.matrices, WO: w.o, WGATE: w.gate, WUP: w.up, WDOWN: w.downT };
    const [OB, HB, IB] = [s.heads * s.headDim, s.hidden, s.inter].map((n) => cdiv(n, 8));
    const kernel = this.kernels.get({
      file,
      weights: Object.fromEntries(Object.entries(matrices).map(([k, m]) => [k, m.format])),
      consts: {
        ...{ OB, HB, IB, OM: cdiv(OB, 8), HM: cdiv(HB, 8), IM: cdiv(IB, 8), GAIN_MLP: w.mlpGain !== null },
        ...own.consts,
        ...this.uniformWeights(matrices),
      },
    });
    const params = {
      o_cols8: w.o.cols4 / 2,
      h_cols8: w.gate.cols4 / 2,
      hidden: s.hidden,
      inter: s.inter,
      layer,
      threshold: -1,
      eps: s.eps,
      ...own.params,
    };
    const args = {
      params,
      ...own.buffers,
      ...(w.mlpGain ? { GM: w.mlpGain } : {}),
      ...Object.fromEntries(Object.entries(matrices).map(([k, m]) => [k, m.parts[0].buffer])),
    };
    const writes: TensorView = { buffer: own.buffers.X, stride: s.hiddenStride, width: s.hidden, rows: "tokens" };
    return { ...this.single(name, kernel, args, () => [1, 1, 1], writes), gateOfLayer: layer };
  }

  /**
   * UW and each matrix's `<name>_VEC4S`: whether a kernel reads these float matrices, each in one
   * binding, as uniform arrays (`//#weights8u`): only where every one fits the adapter's uniform
   * binding, as small models' do.
   */
  private uniformWeights(matrices: Record<string, GpuMatrix>): Record<string, number | boolean> {
    const maxUniform = this.gpu.device.limits.maxUniformBufferBindingSize;
    const fits = (m: GpuMatrix) => m.parts.length === 1 && isFloatFormat(m.format) && m.parts[0].buffer.size <= maxUniform;
    const UW = Object.values(matrices).every(fits);
    if (!UW) return { UW };
    return { UW, ...Object.fromEntries(Object.entries(matrices).map(([k, m]) => [`${k}_VEC4S`, Math.floor(m.parts[0].buffer.size / 16)])) };
  }

  /** x += act W_down^T, reading W_down transposed and skipping neurons whose activation is zero. */
  down(name: string, downT: GpuMatrix, act: GPUBuffer, x: GPUBuffer, o: { batch: boolean; cats?: boolean }): Step[] {
    const op: OpName = o.batch ? "down_mat" : o.cats ? "down_cats" : "down_vec";
    const s = this.shape;
    const c: VariantConsts = { ...this.consts(op, downT, s.interStride / 4, o.batch), QUANT: isTransposedQuantized(downT.format) };
    const kernel = this.kernels.get({ file: c.XU ? "down1" : "down", weights: { W: downT.format }, consts: c });
    // down1 (activations as a uniform array) gives each lane blocks of 8 outputs, down blocks of 4.
    const workgroups = cdiv(downT.cols4 / (c.XU ? 2 : 1), (c.WG as number) * (c.V as number));
    // With ONE, grid z walks NS ranges of the neurons (see down_vec in variants.ts).
    const ranges = c.ONE === true ? (c.NS as number) : 1;
    const scratch = ranges > 1 ? this.downScratch(ranges * downT.cols4, workgroups) : {};
    return downT.parts.map((part) => ({
      name,
      ...this.tiled(c, o.batch, s.interStride, act, (token0, A) =>
        kernel.bind(
          {
            params: {
              rows: part.rows,
              row_offset: part.row0,
              inter: s.interStride,
              cols4: downT.cols4,
              y_stride: s.hiddenStride,
              token0,
            },
            state: this.buf.state,
            act: A,
            Y: x,
            W: part.buffer,
            ...scratch,
          },
          name,
        ),
      ),
      grid: (ntok: number) => this.spill(workgroups, ranges > 1 ? ranges : c.XU ? 1 : cdiv(ntok, c.TM)),
      writes: { buffer: x, stride: s.hiddenStride, width: s.hidden, rows: "tokens" as const },
    }));
  }

  /** The greedy next token, picked on the GPU; advances the decode state for the next step. */
  argmax(logits: GPUBuffer, tokens: GPUBuffer, outIds: GPUBuffer): Step {
    return this.single(
      "argmax",
      this.kernels.get({ file: "argmax", consts: this.variants.pick("argmax").consts }),
      { params: { vocab: this.shape.vocab }, state: this.buf.state, logits, tokens, out_ids: outIds },
      () => [1, 1, 1],
      { buffer: tokens, stride: 1, width: 1, rows: 1 },
    );
  }

  /** Negative log-likelihood of each token's target, on the GPU. */
  nll(logits: GPUBuffer, logitsStride: number, targets: GPUBuffer, nll: GPUBuffer): Step {
    return this.single(
      "nll",
      this.kernels.get({ file: "nll" }),
      { params: { vocab: this.shape.vocab, stride: logitsStride }, state: this.buf.state, logits, targets, nll },
      (ntok) => [cdiv(ntok, 64), 1, 1],
      { buffer: nll, stride: 1, width: 1, rows: "tokens" },
    );
  }
}
