import { CatsError } from "../errors.js";
import type { GpuContext } from "../gpu/device.js";
import { Usage } from "../gpu/flags.js";
import { KernelCache } from "../gpu/kernel.js";
import type { KernelSource } from "../gpu/kernelsource.js";
import { Submitter, type Readback } from "../gpu/submit.js";
import { tunedKey, UNIFORM_INPUT_VEC4S, VARIANTS, VariantTable, type OpName, type TunedChoices } from "../gpu/variants.js";
import { hashSources, tune, tuneKey, type TuneCase, type TuneProgress, type TuneStore } from "../gpu/autotune.js";
import { modelTuneCases } from "./tuning.js";
import type { Checkpoint } from "../model/checkpoint.js";
import type { LlamaConfig } from "../model/config.js";
import { forwardSteps, type Activations, type ModelWeights, type PassOutput, type Strides } from "./forward.js";
import { loadWeights, type UpLayout } from "./load.js";
import { encodeSteps, gateUpShape, matrixShape, Ops, setStepParams, type OpShape, type Step } from "./ops.js";
import { padCols, type GpuMatrix } from "./weights.js";
import { isRowBlocked } from "../gpu/wgsl.js";

/** Greedy steps one submission may chain unless EngineOptions.maxChain says otherwise. */
export const DEFAULT_MAX_CHAIN = 256;

export interface EngineOptions {
  kernels: KernelSource;
  /** Most tokens one pass processes; longer prompts are prefilled in several passes. */
  chunk?: number;
  /** Most greedy steps chained in one submission. */
  maxChain?: number;
  /** Dump |silu(gate)| of every position during batched passes, for calibration. */
  capture?: boolean;
  /** Variant overrides per op (the --variant flags). */
  variants?: Partial<Record<OpName, string>>;
  /**
   * Measure kernel variants on first use and keep the choices in `store` (null or absent: the
   * defaults). With `batchedOnly`, only the ops of batched passes are measured
   * (calibration and evaluation need nothing else); the decode ops keep their defaults until a
   * later load measures them.
   */
  tune?: { store: TuneStore; onCase?: (c: TuneCase, progress: TuneProgress) => void; batchedOnly?: boolean } | null;
  /** Split weight matrices at this many bytes instead of the adapter's binding limit (tests). */
  maxBindingBytes?: number;
  /**
   * Store the matrices read whole every token in row blocks (f32b/f16b, loadWeights), and W_down^T
   * in column slices: true for all of them, false for none. Default (or `CATS_ROW_BLOCKS`: 1 all, 0
   * none): on the cpu kernel flavour, all of them in a model of at least STREAMED_MODEL_FROM bytes,
   * otherwise those of at least ROW_BLOCKS_FROM bytes (W_down^T: downSlicesFrom); none on gpu.
   */
  rowBlocks?: boolean;
  /**
   * Where W_up goes where row blocks apply (UpLayout, load.ts): "rows" (default) for a model that
   * will decode with CATS, "blocks" for one that will only decode dense, "both" to measure the two.
   */
  upLayout?: UpLayout;
}

/**
 * Matrices smaller than this stay row after row by default: they sit in the CPU's caches, where the
 * row-block layout's one stream a fibre buys nothing (stories260K decoded 0.89x as fast with its
 * 32-128 KiB matrices in blocks; llama-110m's 1.2-49 MB ones 1.18x as fast, lavapipe, 2026-12-06).
 */
export const ROW_BLOCKS_FROM = 1 << 20;

/**
 * A model with at least this many bytes of weights streams every matrix from memory each token,
 * however small the matrix, so all of them go in row blocks: llama-110m at q4 (106 MB; its q/k/v, o
 * and gate 0.3-0.9 MB each, under ROW_BLOCKS_FROM) decoded 1.10x as fast dense and 1.13x / 1.17x at
 * CATS 50% / 70% with them in blocks (7 interleaved rounds of 24 tokens, lavapipe, 2026-12-07).
 */
export const STREAMED_MODEL_FROM = 16 << 20;

/**
 * The smallest matrix (bytes) stored in row blocks on this device (Infinity: none) for a model of
 * `modelBytes` bytes of weights; `forced`: all or none.
 */
export function rowBlocksFrom(gpu: GpuContext, forced?: boolean, modelBytes = 0): number {
  const value = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CATS_ROW_BLOCKS;
  if (value !== undefined && value !== "" && value !== "0" && value !== "1") {
    throw new CatsError(`CATS_ROW_BLOCKS: expected 0 or 1, got "${value}"`);
  }
  const all = forced ?? (value === "1" ? true : value === "0" ? false : undefined);
  if (all !== undefined) return all ? 0 : Infinity;
  if (gpu.flavour !== "cpu") return Infinity;
  return modelBytes >= STREAMED_MODEL_FROM ? 0 : ROW_BLOCKS_FROM;
}

/** Bytes of every tensor in a checkpoint's safetensors files. */
export const checkpointBytes = (ckpt: Checkpoint): number => [...ckpt.tensors.values()].reduce((n, t) => n + t.end - t.begin, 0);

/** Share of MLP neurons that CATS zeroed, per layer and over all layers, since the last reset. */
export interface SparsityStats {
  tokens: number;
  perLayer: number[];
  overall: number;
}

/** A step's output, read back by the debug path: one row per token. */
export interface NamedTensor {
  name: string;
  rows: Float32Array[];
}

const STORAGE = Usage.STORAGE | Usage.COPY_DST | Usage.COPY_SRC;
const ACTIVATION = STORAGE | Usage.UNIFORM;
const UNIFORM_WINDOW = UNIFORM_INPUT_VEC4S * 16;
/** Activation rows are allocated in whole tiles of the largest token tile a variant uses. */
const TILE = 8;
const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** The model dimensions and activation strides the op builders need. */
export function opShapeOf(c: LlamaConfig, maxTokens: number): OpShape {
  return {
    maxTokens,
    hidden: c.hiddenSize,
    inter: c.intermediateSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    vocab: c.vocabSize,
    eps: c.rmsNormEps,
    hiddenStride: padCols(c.hiddenSize),
    interStride: padCols(c.intermediateSize),
    qkvStride: padCols((c.numHeads + 2 * c.numKvHeads) * c.headDim),
    qStride: padCols(c.numHeads * c.headDim),
  };
}

/**
 * A hash of the kernel files whose code decides which variant is fastest, and of the variants
 * themselves: a change to any of them (a new variant included) invalidates the tuning.
 */
export function tunedKernelsHash(source: KernelSource): string {
  return hashSources([...TUNED_KERNELS.map((k) => source(k)), JSON.stringify(VARIANTS), TUNE_CASES]);
}

/** What the tune cases measure (tuning.ts); a new version re-tunes cached choices made the old way. */
const TUNE_CASES =
  "14: timed with pauses between dawn.node's polls (poll.ts; version 12 ran with a core spinning in each wait), paired median speed-ups then a final of three, split-K on CPU drivers, down_vec on a dense input, down_cats on a randomly half-active input per layer (tuned apart), gate_up_cats at thresholds leaving 50% and 30% of the tune input's neurons active (version 13 had no gate_up_cats), calls rotating over the layers, one-token down cases over at least 96 MiB of W_down^T (zeroed copies) where the model is that large, 5 rounds for decode cases, layer_vec, inline floor";

const TUNED_KERNELS = [
  "attend",
  "attention",
  "attention_decode",
  "attention_serial",
  "attention_decode_io",
  "group_rows",
  "common",
  "lanes",
  "input",
  "norm",
  "project",
  "project1",
  "matmul",
  "gate_up",
  "down",
  "down1",
  "weights_f32",
  "weights_f16",
  "weights8_f32",
  "weights8_f16",
  "weights8u_f32",
  "weights8u_f16",
  "rowblock",
  "qkv_attention",
  "o_mlp",
  "o_mlp_tail",
  "layer",
  "qrows",
  "weights_q",
  "weights8_q",
  "weights_qt",
  "weights8_qt",
];

/** The ops batched passes (prefill, evaluation, calibration) run. */
const BATCHED_OPS: OpName[] = ["matmul", "gate_up_mat", "down_mat", "attention_mat"];

/**
 * The measured variant per op and matrix shape for this adapter: from the store when this adapter,
 * driver and kernel code were measured before, else measured now (the cases missing) and stored.
 */
async function tuneModel(
  gpu: GpuContext,
  kernels: KernelCache,
  weights: ModelWeights,
  config: LlamaConfig,
  store: TuneStore,
  onCase?: (c: TuneCase, progress: TuneProgress) => void,
  batchedOnly = false,
): Promise<TunedChoices> {
  const key = tuneKey(gpu, tunedKernelsHash(kernels.source));
  const record = store.load(key) ?? { choices: {} };
  // The CATS gate/up case needs a capture pass first: only when its choice is not stored yet.
  const first = weights.layers[0];
  const catsGate = !batchedOnly && !(tunedKey("gate_up_cats", gateUpShape(first.gate, first.upCats ?? first.up)) in record.choices);
  const { cases, destroy } = await modelTuneCases(gpu, kernels, weights, config, config.maxPositions, catsGate);
  try {
    const wanted = batchedOnly ? cases.filter((c) => BATCHED_OPS.includes(c.op)) : cases;
    const choices = await tune(gpu, wanted, record.choices, 3, onCase);
    if (JSON.stringify(choices) !== JSON.stringify(record.choices)) await store.save(key, { ...record, choices });
    return choices;
  } finally {
    destroy();
  }
}

/** The argmax kernel's mark on an id whose logits held a NaN or an infinity. */
const NON_FINITE = 0x80000000;

function nonFinite(position: number): CatsError {
  return new CatsError(
    `the logits at position ${position} are not finite (NaN or infinity): the weights hold non-finite values or overflow; cats info --model DIR scans them`,
  );
}

/**
 * A Llama model resident on the GPU: weights, KV cache, activations, the steps of its forward
 * passes (built once at load; nothing is created per token), the decode state, and submission.
 */
export class LlamaEngine {
  readonly config: LlamaConfig;
  readonly contextLength: number;
  readonly chunk: number;
  readonly maxChain: number;
  readonly variants: VariantTable;

  private readonly device: GPUDevice;
  private readonly submitter: Submitter;
  private readonly buf: Activations & Record<"rope" | "outIds" | "targets" | "nll", GPUBuffer>;
  private readonly strides: Strides;
  /** One decode token's dispatches, argmax last: dense, and with CATS masking the MLP (the same list unless a variant differs). */
  private readonly denseDecode: Step[];
  private readonly catsDecode: Step[];
  private readonly batch: Record<PassOutput, Step[]>;
  private readonly captureRows: number;
  private thresholds: number[] | null = null;
  private statTokens = 0;
  /** Active-neuron totals folded in from the GPU's u32 counters, which would wrap on long runs. */
  private readonly foldedTotals: Float64Array;
  /** Absolute position of the next token to be processed. */
  private pos = 0;
  private step = 0;
  /** decodeTimed's query set and resolve buffer, made on first use. */
  private stepTimer: { count: number; set: GPUQuerySet; resolved: GPUBuffer } | null = null;

  private constructor(
    readonly gpu: GpuContext,
    config: LlamaConfig,
    options: EngineOptions,
    readonly weights: ModelWeights,
    kernels: KernelCache,
    tuned: TunedChoices,
  ) {
    const c = config;
    this.config = c;
    this.device = gpu.device;
    this.contextLength = c.maxPositions;
    this.chunk = Math.min(options.chunk ?? 512, c.maxPositions);
    this.maxChain = options.maxChain ?? DEFAULT_MAX_CHAIN;
    this.submitter = new Submitter(gpu);
    const rows = cdiv(this.chunk, TILE) * TILE;
    const qkvWidth = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
    this.strides = {
      hidden: padCols(c.hiddenSize),
      inter: padCols(c.intermediateSize),
      qkv: padCols(qkvWidth),
      q: padCols(c.numHeads * c.headDim),
      vocab: padCols(c.vocabSize),
    };
    const s = this.strides;
    this.captureRows = options.capture ? rows : 0;
    const make = (label: string, bytes: number): GPUBuffer => {
      if (bytes > this.device.limits.maxStorageBufferBindingSize) {
        throw new CatsError(
          `activation buffer ${label} needs ${bytes} bytes, over this adapter's ${this.device.limits.maxStorageBufferBindingSize}-byte binding limit (try a smaller --chunk)`,
        );
      }
      // Kernels may read an activation as a uniform array, bound at any row with a whole uniform window after it.
      return this.device.createBuffer({ label, size: bytes + UNIFORM_WINDOW, usage: ACTIVATION });
    };
    this.buf = {
      state: make("state", 16),
      tokens: make("tokens", rows * 4),
      x: make("x", rows * s.hidden * 4),
      xLast: make("x last", s.hidden * 4),
      qkv: make("qkv", rows * s.qkv * 4),
      q: make("q", rows * s.q * 4),
      o: make("o", rows * s.q * 4),
      act: make("act", rows * s.inter * 4),
      logits: make("logits", rows * s.vocab * 4),
      totals: make("active totals", c.numLayers * 4),
      capture: make("capture", options.capture ? c.numLayers * rows * s.inter * 4 : 16),
      rope: make("rope", this.contextLength * (c.headDim / 2) * 8),
      outIds: make("out_ids", this.maxChain * 4 + 4),
      targets: make("targets", rows * 4),
      nll: make("nll", rows * 4),
    };
    this.foldedTotals = new Float64Array(c.numLayers);
    this.writeRopeTable();
    this.variants = new VariantTable(gpu, options.variants, tuned);
    const ops = new Ops(gpu, kernels, this.variants, this.buf, opShapeOf(c, rows));
    const capture = options.capture ? rows : null;
    const decodeSteps = (cats: boolean) => [
      ...forwardSteps(ops, weights, this.buf, s, { batch: false, cats, output: "last", captureRows: null }),
      ops.argmax(this.buf.logits, this.buf.tokens, this.buf.outIds),
    ];
    this.denseDecode = decodeSteps(false);
    // A CATS step list of its own: where the fused kernels run (each has a masked path that a dense
    // step's kernel goes without), or where a split MLP's gate/up or down step has a CATS choice or a
    // copy of W_up of its own.
    const fusedTail = this.denseDecode.some((step) => step.name.endsWith(" layer") || step.name.endsWith(" o_proj+mlp"));
    const splitMlp = this.denseDecode.some((step) => step.name.endsWith(" down"));
    const differs = (dense: OpName, cats: OpName, shape: string) =>
      this.variants.pick(dense, shape).name !== this.variants.pick(cats, shape).name;
    const catsDiffers =
      fusedTail ||
      (splitMlp &&
        weights.layers.some(
          (l) =>
            l.upCats !== null ||
            differs("gate_up_vec", "gate_up_cats", gateUpShape(l.gate, l.up)) ||
            differs("down_vec", "down_cats", matrixShape(l.downT)),
        ));
    this.catsDecode = catsDiffers ? decodeSteps(true) : this.denseDecode;
    this.batch = {
      none: forwardSteps(ops, weights, this.buf, s, { batch: true, output: "none", captureRows: capture }),
      last: [
        ...forwardSteps(ops, weights, this.buf, s, { batch: true, output: "last", captureRows: capture }),
        ops.argmax(this.buf.logits, this.buf.tokens, this.buf.outIds),
      ],
      all: [
        ...forwardSteps(ops, weights, this.buf, s, { batch: true, output: "all", captureRows: capture }),
        ops.nll(this.buf.logits, s.vocab, this.buf.targets, this.buf.nll),
      ],
    };
  }

  static async load(gpu: GpuContext, ckpt: Checkpoint, options: EngineOptions): Promise<LlamaEngine> {
    gpu.device.pushErrorScope("out-of-memory");
    const weights = await loadWeights(
      gpu.device,
      ckpt,
      options.maxBindingBytes,
      rowBlocksFrom(gpu, options.rowBlocks, checkpointBytes(ckpt)),
      options.upLayout,
    );
    const oom = await gpu.device.popErrorScope();
    if (oom) throw new CatsError(`${ckpt.files.location}: the adapter ran out of memory while uploading the weights (${oom.message})`);
    const kernels = new KernelCache(gpu, options.kernels);
    const tuned = options.tune
      ? await tuneModel(gpu, kernels, weights, ckpt.config, options.tune.store, options.tune.onCase, options.tune.batchedOnly)
      : {};
    const engine = new LlamaEngine(gpu, ckpt.config, options, weights, kernels, tuned);
    await gpu.device.queue.onSubmittedWorkDone();
    gpu.check("model load");
    // Drivers compile a pipeline at its first dispatch: pay that now, not in the first tokens.
    await engine.prefill([ckpt.config.bosTokenId ?? 0]);
    await engine.decode();
    if (engine.catsDecode !== engine.denseDecode) {
      // Thresholds of 0 keep every neuron: the CATS step list runs once, unmasked, to compile its kernels.
      engine.setThresholds(new Array<number>(ckpt.config.numLayers).fill(0));
      await engine.decode();
      engine.setThresholds(null);
      await engine.takeSparsityStats();
    }
    engine.reset();
    return engine;
  }

  private writeRopeTable(): void {
    const c = this.config;
    const half = c.headDim / 2;
    const table = new Float32Array(this.contextLength * half * 2);
    for (let pos = 0; pos < this.contextLength; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = pos / c.ropeTheta ** ((2 * i) / c.headDim);
        table[(pos * half + i) * 2] = Math.cos(angle);
        table[(pos * half + i) * 2 + 1] = Math.sin(angle);
      }
    }
    this.device.queue.writeBuffer(this.buf.rope, 0, table);
  }

  /** The decode steps for the current thresholds. */
  private get decodeStep(): Step[] {
    return this.thresholds ? this.catsDecode : this.denseDecode;
  }

  /** Dispatches of one decode step (argmax included): the figure the dispatch-count target is about. */
  get decodeDispatches(): number {
    return this.decodeStep.length;
  }

  get position(): number {
    return this.pos;
  }

  /**
   * Which matrices are stored in row blocks (loadWeights), for reports: "q/k/v, o, gate, lm_head in
   * row blocks", with W_up's second copy where CATS steps read one in rows; or null.
   */
  get rowBlocksSummary(): string | null {
    const w = this.weights;
    const named: [string, GpuMatrix[]][] = [
      ["q/k/v", w.layers.map((l) => l.qkv)],
      ["o", w.layers.map((l) => l.o)],
      ["gate", w.layers.map((l) => l.gate)],
      ["up", w.layers.map((l) => l.up)],
      ["lm_head", [w.lmHead]],
    ];
    const blocked = named.filter(([, ms]) => ms.some((m) => isRowBlocked(m.format))).map(([name]) => name);
    if (blocked.length === 0) return null;
    const catsCopy = w.layers.some((l) => l.upCats !== null) ? " (CATS steps: up in rows, a second copy)" : "";
    return `${blocked.join(", ")} in row blocks${catsCopy}`;
  }

  private checkRoom(ntok: number): void {
    if (this.pos + ntok > this.contextLength) {
      throw new CatsError(
        `sequence of ${this.pos + ntok} tokens does not fit the model's context of ${this.contextLength} (max_position_embeddings)`,
      );
    }
  }

  /**
   * The one way work reaches the GPU: writes the decode state (and tokens, targets), encodes the
   * passes in order, submits, and reads back the requested ranges.
   */
  private async run(
    what: string,
    o: {
      pos: number;
      ntok: number;
      step?: number;
      tokens?: number[];
      targets?: number[];
      passes: { steps: Step[]; ntok: number; times?: number }[];
      read?: Readback[];
      kind?: string;
    },
  ): Promise<Uint8Array[]> {
    const q = this.device.queue;
    q.writeBuffer(this.buf.state, 0, new Uint32Array([o.pos, o.ntok, o.step ?? this.step, 0]));
    if (o.tokens) q.writeBuffer(this.buf.tokens, 0, new Uint32Array(o.tokens));
    if (o.targets) q.writeBuffer(this.buf.targets, 0, new Uint32Array(o.targets));
    const tokens = o.passes.reduce((n, p) => n + p.ntok * (p.times ?? 1), 0);
    if (this.thresholds !== null) this.statTokens += tokens;
    return this.submitter.run(
      what,
      (encoder) => {
        const pass = encoder.beginComputePass();
        for (const p of o.passes) for (let i = 0; i < (p.times ?? 1); i++) encodeSteps(pass, p.steps, p.ntok);
        pass.end();
      },
      o.read ?? [],
      o.kind,
      Math.max(1, tokens),
    );
  }

  /**
   * Weight bytes one decode step reads: every matrix whole, except W_up and W_down, which a CATS
   * step reads only for its active neurons (`activeFraction` per layer; null: dense).
   */
  weightBytesPerToken(activeFraction: number[] | null): number {
    const m = this.weights;
    let bytes = m.lmHead.bytes + m.embed.bytes / this.config.vocabSize;
    m.layers.forEach((l, i) => {
      bytes += l.qkv.bytes + l.o.bytes + l.gate.bytes + (l.up.bytes + l.downT.bytes) * (activeFraction ? activeFraction[i] : 1);
    });
    return bytes;
  }

  /**
   * Sets one CATS threshold per layer (null: dense). Every pass then masks the MLP with it; a
   * decode step also skips the inactive neurons' W_up and W_down rows. Changeable between
   * submissions.
   */
  setThresholds(thresholds: number[] | null): void {
    if (thresholds !== null && thresholds.length !== this.config.numLayers) {
      throw new CatsError(`expected ${this.config.numLayers} thresholds (one per layer), got ${thresholds.length}`);
    }
    this.thresholds = thresholds ? [...thresholds] : null;
    const steps = new Set([...this.denseDecode, ...this.catsDecode, ...this.batch.none, ...this.batch.last, ...this.batch.all]);
    for (const step of steps) {
      if (step.gateOfLayer !== undefined) setStepParams(step, { threshold: thresholds ? thresholds[step.gateOfLayer] : -1 });
    }
  }

  /** Adds the GPU's active-neuron counters to the float64 totals and clears them. */
  private async foldActiveCounts(): Promise<void> {
    const L = this.config.numLayers;
    const [bytes] = await this.submitter.run("sparsity stats", () => {}, [{ buffer: this.buf.totals, bytes: L * 4 }]);
    this.device.queue.writeBuffer(this.buf.totals, 0, new Uint32Array(L));
    new Uint32Array(bytes.buffer, bytes.byteOffset, L).forEach((v, l) => (this.foldedTotals[l] += v));
  }

  /** Reads and clears the sparsity reached since the last call. */
  async takeSparsityStats(): Promise<SparsityStats> {
    await this.foldActiveCounts();
    const totals = [...this.foldedTotals];
    this.foldedTotals.fill(0);
    const tokens = this.statTokens;
    this.statTokens = 0;
    const inter = this.config.intermediateSize;
    const perLayer = totals.map((active) => (tokens > 0 ? 1 - active / (tokens * inter) : 0));
    const overall = perLayer.reduce((a, b) => a + b, 0) / this.config.numLayers;
    return { tokens, perLayer, overall };
  }

  /** Starts a new sequence: forgets the KV cache contents (they are overwritten position by position). */
  reset(): void {
    this.pos = 0;
    this.step = 0;
  }

  /** Cuts `ids` into passes of at most `chunk` tokens from the current position; runs all but the last with `inner`. */
  private async inChunks(ids: number[], inner: (part: number[], at: number) => Promise<void>): Promise<number[]> {
    this.checkRoom(ids.length);
    let rest = ids;
    while (rest.length > this.chunk) {
      await inner(rest.slice(0, this.chunk), this.pos);
      this.pos += this.chunk;
      rest = rest.slice(this.chunk);
    }
    return rest;
  }

  /**
   * Processes the prompt in batched passes and picks the greedy next token on the GPU. With
   * `withLogits`, the last position's logits come back too (for sampling).
   */
  async prefill(ids: number[], withLogits = false): Promise<{ token: number; logits: Float32Array | null }> {
    if (ids.length === 0) throw new CatsError("empty prompt: nothing to process");
    const last = await this.inChunks(ids, async (part, pos) => {
      await this.run("prefill", {
        pos,
        ntok: part.length,
        tokens: part,
        passes: [{ steps: this.batch.none, ntok: part.length }],
        kind: "prefill",
      });
    });
    return this.finishStep("prefill", { steps: this.batch.last, ntok: last.length }, last, withLogits);
  }

  /** One decode step on the token the previous step chose (or that setNextToken() wrote). */
  async decode(withLogits = false): Promise<{ token: number; logits: Float32Array | null }> {
    this.checkRoom(1);
    return this.finishStep("decode", { steps: this.decodeStep, ntok: 1 }, undefined, withLogits);
  }

  private async finishStep(
    what: string,
    pass: { steps: Step[]; ntok: number },
    tokens: number[] | undefined,
    withLogits: boolean,
  ): Promise<{ token: number; logits: Float32Array | null }> {
    const V = this.config.vocabSize;
    const read: Readback[] = [{ buffer: this.buf.outIds, offset: this.step * 4, bytes: 4 }];
    if (withLogits) read.push({ buffer: this.buf.logits, bytes: V * 4 });
    const [id, logits] = await this.run(what, {
      pos: this.pos,
      ntok: pass.ntok,
      tokens,
      passes: [pass],
      read,
      kind: what,
    });
    const position = this.pos + pass.ntok - 1;
    this.pos += pass.ntok;
    this.step = (this.step + 1) % this.maxChain;
    const token = new Uint32Array(id.buffer, id.byteOffset, 1)[0];
    if ((token & NON_FINITE) !== 0) throw nonFinite(position);
    return { token, logits: withLogits ? new Float32Array(logits.buffer, logits.byteOffset, V) : null };
  }

  /** Chains `count` greedy decode steps in one submission (at most maxChain); returns the chosen ids in order. */
  async decodeGreedy(count: number): Promise<number[]> {
    if (count <= 0) return [];
    const n = Math.min(count, this.maxChain);
    this.checkRoom(n);
    if (this.step + n > this.maxChain) this.step = 0;
    const [ids] = await this.run("decode", {
      pos: this.pos,
      ntok: 1,
      passes: [{ steps: this.decodeStep, ntok: 1, times: n }],
      read: [{ buffer: this.buf.outIds, offset: this.step * 4, bytes: n * 4 }],
      kind: "decode",
    });
    const first = this.pos;
    this.pos += n;
    this.step += n;
    const out = [...new Uint32Array(ids.buffer, ids.byteOffset, n)];
    const bad = out.findIndex((id) => (id & NON_FINITE) !== 0);
    if (bad >= 0) throw nonFinite(first + bad);
    return count > n ? out.concat(await this.decodeGreedy(count - n)) : out;
  }

  /**
   * Forgets the positions from `position` on (steps computed past an EOS in a chained chunk): the
   * next step runs at `position`, overwriting their KV cache rows.
   */
  truncate(position: number): void {
    if (position < 0 || position > this.pos) throw new CatsError(`cannot truncate to position ${position}: the sequence has ${this.pos}`);
    this.pos = position;
  }

  /** Makes `id` the input of the next decode step (sampling replaces the GPU's greedy pick). */
  setNextToken(id: number): void {
    this.device.queue.writeBuffer(this.buf.tokens, 0, new Uint32Array([id]));
  }

  /**
   * Negative log-likelihoods of ids[1..] given the prefix, for one evaluation window starting at
   * position 0: one batched pass per chunk, NLL computed on the GPU, only the NLLs read back.
   */
  async windowNll(ids: number[]): Promise<Float64Array> {
    this.reset();
    this.checkRoom(ids.length);
    const out = new Float64Array(Math.max(0, ids.length - 1));
    for (let off = 0; off < ids.length - 1; off += this.chunk) {
      const part = ids.slice(off, off + this.chunk);
      const targets = ids.slice(off + 1, off + 1 + this.chunk);
      while (targets.length < part.length) targets.push(0);
      const [bytes] = await this.run("eval", {
        pos: off,
        ntok: part.length,
        step: 0,
        tokens: part,
        targets,
        passes: [{ steps: this.batch.all, ntok: part.length }],
        read: [{ buffer: this.buf.nll, bytes: part.length * 4 }],
        kind: "eval",
      });
      const nll = new Float32Array(bytes.buffer, bytes.byteOffset, part.length);
      for (let t = 0; t < part.length && off + t < out.length; t++) {
        if (!Number.isFinite(nll[t])) throw nonFinite(off + t);
        out[off + t] = nll[t];
      }
      this.pos = off + part.length;
      // A chunk adds at most chunk * inter per layer, far below 2^32; folding each one keeps long evals exact.
      if (this.thresholds !== null) await this.foldActiveCounts();
    }
    return out;
  }

  /**
   * Runs one window from position 0 and returns |silu(gate)| of every position and neuron, per
   * layer ([position][neuron]). One readback per pass, never per token.
   */
  async captureActivations(ids: number[]): Promise<Float32Array[]> {
    if (this.captureRows === 0) throw new CatsError("this engine was loaded without activation capture (EngineOptions.capture)");
    this.reset();
    this.checkRoom(ids.length);
    const L = this.config.numLayers;
    const inter = this.config.intermediateSize;
    const stride = this.strides.inter;
    const out = Array.from({ length: L }, () => new Float32Array(ids.length * inter));
    for (let off = 0; off < ids.length; off += this.chunk) {
      const part = ids.slice(off, off + this.chunk);
      const [bytes] = await this.run("calibration", {
        pos: off,
        ntok: part.length,
        step: 0,
        tokens: part,
        passes: [{ steps: this.batch.none, ntok: part.length }],
        read: [{ buffer: this.buf.capture, bytes: L * this.captureRows * stride * 4 }],
        kind: "capture",
      });
      const data = new Float32Array(bytes.buffer, bytes.byteOffset, L * this.captureRows * stride);
      for (let l = 0; l < L; l++) {
        for (let t = 0; t < part.length; t++) {
          const src = (l * this.captureRows + t) * stride;
          out[l].set(data.subarray(src, src + inter), (off + t) * inter);
        }
      }
      this.pos = off + part.length;
    }
    return out;
  }

  /**
   * The dispatches of one decode token in order, argmax last: for profiling (bench:steps), which
   * encodes them itself. They read the decode state this engine keeps, so a prefill comes first.
   */
  get decodeSteps(): readonly Step[] {
    return this.decodeStep;
  }

  /**
   * One greedy decode step with each dispatch in its own timestamped pass: the GPU time of every
   * step as it runs inside a token, after the steps before it (bench:steps --in-sequence). A warm
   * loop of one step alone keeps that step's weights in a CPU's caches, which a token's other
   * weights evict; this does not, at the cost of a pass boundary per step.
   */
  async decodeTimed(): Promise<{ token: number; steps: { name: string; ms: number }[] }> {
    if (!this.gpu.features.has("timestamp-query")) {
      throw new CatsError("timing the steps of a token needs the adapter's timestamp-query feature, which this one lacks");
    }
    this.checkRoom(1);
    const steps = this.decodeStep;
    const count = 2 * steps.length;
    if (!this.stepTimer || this.stepTimer.count < count) {
      this.stepTimer?.set.destroy();
      this.stepTimer?.resolved.destroy();
      this.stepTimer = {
        count,
        set: this.device.createQuerySet({ type: "timestamp", count }),
        resolved: this.device.createBuffer({ label: "step timestamps", size: count * 8, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC }),
      };
    }
    const timer = this.stepTimer;
    const q = this.device.queue;
    q.writeBuffer(this.buf.state, 0, new Uint32Array([this.pos, 1, this.step, 0]));
    const [id, stamps] = await this.submitter.run(
      "decode, timed",
      (encoder) => {
        steps.forEach((step, i) => {
          const pass = encoder.beginComputePass({
            timestampWrites: { querySet: timer.set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
          });
          encodeSteps(pass, [step], 1);
          pass.end();
        });
        encoder.resolveQuerySet(timer.set, 0, count, timer.resolved, 0);
      },
      [
        { buffer: this.buf.outIds, offset: this.step * 4, bytes: 4 },
        { buffer: timer.resolved, bytes: count * 8 },
      ],
      "decode, timed",
    );
    this.pos += 1;
    this.step = (this.step + 1) % this.maxChain;
    const token = new Uint32Array(id.buffer, id.byteOffset, 1)[0];
    if ((token & NON_FINITE) !== 0) throw nonFinite(this.pos - 1);
    const t = new BigUint64Array(stamps.buffer.slice(stamps.byteOffset, stamps.byteOffset + count * 8));
    return { token, steps: steps.map((step, i) => ({ name: step.name, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 })) };
  }

  /** Logits at every position of `ids` (at most one chunk) from position 0: for tests and debugging. */
  async allLogits(ids: number[]): Promise<Float32Array[]> {
    return (await this.inspect(ids, ["lm_head"]))[0].rows;
  }

  /**
   * The debug path: runs `ids` (at most one chunk) from position 0 through the batched forward
   * pass and returns what the named steps wrote (all steps when `names` is omitted), one row per
   * token, to compare with a reference implementation step by step.
   */
  async inspect(ids: number[], names?: string[]): Promise<NamedTensor[]> {
    if (ids.length > this.chunk) throw new CatsError(`inspect takes at most ${this.chunk} tokens`);
    if (ids.length === 0) throw new CatsError("inspect needs at least one token");
    this.reset();
    const steps = this.batch.all.filter((s) => s.name !== "nll");
    const wanted = names ?? [...new Set(steps.map((s) => s.name))];
    for (const n of wanted) if (!steps.some((s) => s.name === n)) throw new CatsError(`no step named "${n}"`);
    const ntok = ids.length;
    // After the last step of each wanted name (a split matrix has one step per part), copy its output aside.
    const lastOf = new Map(steps.map((s, i) => [s.name, i]));
    const copies: { name: string; buffer: GPUBuffer; rows: number; stride: number; width: number }[] = [];
    const q = this.device.queue;
    q.writeBuffer(this.buf.state, 0, new Uint32Array([0, ntok, 0, 0]));
    q.writeBuffer(this.buf.tokens, 0, new Uint32Array(ids));
    await this.submitter.run("inspect", (encoder) => {
      steps.forEach((s, i) => {
        const pass = encoder.beginComputePass();
        encodeSteps(pass, [s], ntok);
        pass.end();
        if (lastOf.get(s.name) !== i || !wanted.includes(s.name)) return;
        const rows = s.writes.rows === 1 ? 1 : ntok;
        const bytes = rows * s.writes.stride * 4;
        const buffer = this.device.createBuffer({ label: `inspect ${s.name}`, size: Math.max(16, bytes), usage: STORAGE });
        encoder.copyBufferToBuffer(s.writes.buffer, 0, buffer, 0, bytes);
        copies.push({ name: s.name, buffer, rows, stride: s.writes.stride, width: s.writes.width });
      });
    });
    const data = await this.submitter.run(
      "inspect readback",
      () => {},
      copies.map((c) => ({ buffer: c.buffer, bytes: c.rows * c.stride * 4 })),
    );
    this.pos = ntok;
    return copies.map((c, i) => {
      c.buffer.destroy();
      const all = new Float32Array(data[i].buffer, data[i].byteOffset, c.rows * c.stride);
      return { name: c.name, rows: Array.from({ length: c.rows }, (_, t) => all.slice(t * c.stride, t * c.stride + c.width)) };
    });
  }
}
