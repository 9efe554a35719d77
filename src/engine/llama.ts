import { MAP_READ, Usage } from "../gpu/flags.js";
import { CatsError } from "../errors.js";
import type { GpuContext } from "../gpu/device.js";
import type { KernelSource } from "../gpu/kernelsource.js";
import { encodeDispatches, PipelineCache, rowGrid, withSingleToken, type Dispatch } from "../gpu/pipelines.js";
import type { Checkpoint } from "../model/checkpoint.js";
import type { LlamaConfig } from "../model/config.js";
import { DOWN_SLICES, MlpBlock, sparseStatsDispatch } from "./mlp.js";
import { padCols, uploadMatrix, uploadTransposed, uploadVector, type GpuMatrix } from "./weights.js";

export interface EngineOptions {
  kernels: KernelSource;
  /** Most tokens one pass processes; longer prompts are prefilled in several passes. */
  chunk?: number;
  /** Most greedy steps chained in one submission. */
  maxChain?: number;
  /** Also upload W_down transposed and build the CATS sparse decode kernels. */
  sparse?: boolean;
  /** Dump |silu(gate)| of every position during passes, for calibration. */
  capture?: boolean;
}

/** Share of MLP neurons that CATS zeroed, per layer and over all layers, since the last reset. */
export interface SparsityStats {
  tokens: number;
  perLayer: number[];
  overall: number;
}

interface LayerWeights {
  inputNorm: GPUBuffer;
  qkv: GpuMatrix;
  o: GpuMatrix;
  postNorm: GPUBuffer;
  gate: GpuMatrix;
  up: GpuMatrix;
  down: GpuMatrix;
  downT: GpuMatrix | null;
  k: GPUBuffer;
  v: GPUBuffer;
}

/** What the end of a pass produces: nothing (an inner prefill chunk), the last token's logits, or every token's. */
type PassOutput = "none" | "last" | "all";

const STORAGE = Usage.STORAGE | Usage.COPY_DST | Usage.COPY_SRC;
const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/**
 * A Llama model resident on the GPU: weights, KV cache, activations, and the dispatch lists of
 * its forward pass, all built once at load. Nothing is created per token.
 */
export class LlamaEngine {
  readonly config: LlamaConfig;
  readonly contextLength: number;
  readonly chunk: number;
  readonly maxChain: number;

  private readonly device: GPUDevice;
  private readonly pipes: PipelineCache;
  private readonly buf: Record<
    | "state"
    | "tokens"
    | "x"
    | "h"
    | "qkv"
    | "q"
    | "o"
    | "act"
    | "logits"
    | "rope"
    | "outIds"
    | "targets"
    | "nll"
    | "idx"
    | "val"
    | "actv"
    | "counts"
    | "totals"
    | "capture"
    | "partial",
    GPUBuffer
  >;
  private readonly staging: Record<"ids" | "logits" | "nll", GPUBuffer>;
  private readonly mlps: MlpBlock[] = [];
  /** The forward pass up to the final norm: dense MLPs (masked when thresholds are set). */
  private readonly body: Dispatch[] = [];
  /** The same for one decode token with sparse MLP kernels, or null when the engine is dense-only. */
  private readonly sparseBody: Dispatch[] | null;
  private thresholds: number[] | null = null;
  private statTokens = 0;
  /** Active-neuron totals folded in from the GPU's u32 counters, which would wrap on long runs. */
  private readonly foldedTotals: Float64Array;
  private readonly captureTokens: number;
  private readonly tail: Record<PassOutput, Dispatch[]>;
  private readonly argmax: Dispatch;
  private readonly nllDispatch: Dispatch;
  /** Absolute position of the next token to be processed. */
  private pos = 0;
  private step = 0;

  private constructor(
    readonly gpu: GpuContext,
    ckpt: Checkpoint,
    options: EngineOptions,
    private readonly layers: LayerWeights[],
    private readonly embed: GpuMatrix,
    private readonly lmHead: GpuMatrix,
    finalNorm: GPUBuffer,
  ) {
    const c = ckpt.config;
    this.config = c;
    this.device = gpu.device;
    this.contextLength = c.maxPositions;
    this.chunk = Math.min(options.chunk ?? 512, c.maxPositions);
    this.maxChain = options.maxChain ?? 256;
    this.pipes = new PipelineCache(gpu, options.kernels);
    const tokens4 = cdiv(this.chunk, 4) * 4;
    const H = padCols(c.hiddenSize);
    const qkvRows = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
    const qDim = padCols(c.numHeads * c.headDim);
    const I = padCols(c.intermediateSize);
    const V = padCols(c.vocabSize);
    const make = (label: string, bytes: number): GPUBuffer => {
      if (bytes > this.device.limits.maxStorageBufferBindingSize) {
        throw new CatsError(
          `activation buffer ${label} needs ${bytes} bytes, over this adapter's ${this.device.limits.maxStorageBufferBindingSize}-byte binding limit (try a smaller --chunk)`,
        );
      }
      return this.device.createBuffer({ label, size: Math.max(16, bytes), usage: STORAGE });
    };
    this.buf = {
      state: make("state", 16),
      tokens: make("tokens", tokens4 * 4),
      x: make("x", tokens4 * H * 4),
      h: make("h", tokens4 * H * 4),
      qkv: make("qkv", tokens4 * padCols(qkvRows) * 4),
      q: make("q", tokens4 * qDim * 4),
      o: make("o", tokens4 * qDim * 4),
      act: make("act", tokens4 * I * 4),
      logits: make("logits", tokens4 * V * 4),
      rope: make("rope", this.contextLength * (c.headDim / 2) * 8),
      outIds: make("out_ids", this.maxChain * 4 + 4),
      targets: make("targets", tokens4 * 4),
      nll: make("nll", tokens4 * 4),
      idx: make("active idx", I * 4),
      val: make("active val", I * 4),
      actv: make("active act", I * 4),
      counts: make("active counts", c.numLayers * 4),
      totals: make("active totals", c.numLayers * 4),
      capture: make("capture", options.capture ? c.numLayers * tokens4 * c.intermediateSize * 4 : 16),
      partial: make("down partials", options.sparse ? DOWN_SLICES * H * 4 : 16),
    };
    this.captureTokens = options.capture ? tokens4 : 0;
    this.foldedTotals = new Float64Array(c.numLayers);
    const readable = (label: string, bytes: number): GPUBuffer =>
      this.device.createBuffer({ label, size: bytes, usage: Usage.MAP_READ | Usage.COPY_DST });
    this.staging = {
      ids: readable("ids readback", this.maxChain * 4 + 4),
      logits: readable("logits readback", c.vocabSize * 4),
      nll: readable("nll readback", tokens4 * 4),
    };
    this.writeRopeTable();

    const embedDispatch = this.embedDispatch();
    this.body.push(embedDispatch);
    const sparseBody: Dispatch[] = [embedDispatch];
    layers.forEach((l, i) => {
      const attention = this.attentionDispatches(l, i);
      const mlp = new MlpBlock(
        this.pipes,
        this.device,
        this.cpuKernels,
        {
          hidden: c.hiddenSize,
          inter: c.intermediateSize,
          layer: i,
          captureOffset: options.capture ? i * tokens4 * c.intermediateSize : null,
        },
        l,
        this.buf,
      );
      this.mlps.push(mlp);
      this.body.push(...attention, ...mlp.dense);
      if (mlp.sparse) sparseBody.push(...attention, ...mlp.sparse);
    });
    this.sparseBody = options.sparse
      ? [...sparseBody, sparseStatsDispatch(this.pipes, c.numLayers, this.buf.counts, this.buf.totals)]
      : null;
    this.tail = {
      none: [],
      last: [
        this.normDispatch(finalNorm, this.buf.x, this.buf.h, true),
        this.matmul(lmHead, this.buf.h, this.buf.logits, { fixedNtok: 1 }),
      ],
      all: [this.normDispatch(finalNorm, this.buf.x, this.buf.h, false), this.matmul(lmHead, this.buf.h, this.buf.logits, {})],
    };
    this.argmax = this.argmaxDispatch();
    this.nllDispatch = this.makeNllDispatch();
  }

  static async load(gpu: GpuContext, ckpt: Checkpoint, options: EngineOptions): Promise<LlamaEngine> {
    const c = ckpt.config;
    const d = gpu.device;
    const H = c.hiddenSize;
    const embed = await uploadMatrix(d, ckpt, [{ name: "model.embed_tokens.weight", rows: c.vocabSize }], H, "embed_tokens");
    const lmHead = c.tieWordEmbeddings ? embed : await uploadMatrix(d, ckpt, [{ name: "lm_head.weight", rows: c.vocabSize }], H, "lm_head");
    const layers: LayerWeights[] = [];
    const kvBytes = c.maxPositions * c.numKvHeads * c.headDim * 4;
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}.`;
      const qRows = c.numHeads * c.headDim;
      const kvRows = c.numKvHeads * c.headDim;
      layers.push({
        inputNorm: await uploadVector(d, ckpt, `${p}input_layernorm.weight`, H),
        qkv: await uploadMatrix(
          d,
          ckpt,
          [
            { name: `${p}self_attn.q_proj.weight`, rows: qRows },
            { name: `${p}self_attn.k_proj.weight`, rows: kvRows },
            { name: `${p}self_attn.v_proj.weight`, rows: kvRows },
          ],
          H,
          `layer ${i} qkv`,
        ),
        o: await uploadMatrix(d, ckpt, [{ name: `${p}self_attn.o_proj.weight`, rows: H }], qRows, `layer ${i} o_proj`),
        postNorm: await uploadVector(d, ckpt, `${p}post_attention_layernorm.weight`, H),
        gate: await uploadMatrix(d, ckpt, [{ name: `${p}mlp.gate_proj.weight`, rows: c.intermediateSize }], H, `layer ${i} gate_proj`),
        up: await uploadMatrix(d, ckpt, [{ name: `${p}mlp.up_proj.weight`, rows: c.intermediateSize }], H, `layer ${i} up_proj`),
        down: await uploadMatrix(d, ckpt, [{ name: `${p}mlp.down_proj.weight`, rows: H }], c.intermediateSize, `layer ${i} down_proj`),
        downT: options.sparse
          ? await uploadTransposed(d, ckpt, `${p}mlp.down_proj.weight`, H, c.intermediateSize, `layer ${i} down_proj^T`)
          : null,
        k: d.createBuffer({ label: `layer ${i} k cache`, size: kvBytes, usage: STORAGE }),
        v: d.createBuffer({ label: `layer ${i} v cache`, size: kvBytes, usage: STORAGE }),
      });
    }
    const finalNorm = await uploadVector(d, ckpt, "model.norm.weight", H);
    const engine = new LlamaEngine(gpu, ckpt, options, layers, embed, lmHead, finalNorm);
    await d.queue.onSubmittedWorkDone();
    gpu.check("model load");
    return engine;
  }

  // ---- dispatch builders (run once, at load) ----

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

  private get cpuKernels(): boolean {
    return this.gpu.flavour === "cpu";
  }

  private matmul(w: GpuMatrix, x: GPUBuffer, y: GPUBuffer, opts: { fixedNtok?: number; accumulate?: boolean }): Dispatch {
    const params = this.pipes.uniform([w.rows, w.cols4, w.cols4, padCols(w.rows), opts.fixedNtok ?? 0, opts.accumulate ? 1 : 0, 0, 0]);
    const grid = rowGrid(this.cpuKernels, this.device.limits.maxComputeWorkgroupsPerDimension, w.rows, opts.fixedNtok);
    const d = withSingleToken(
      this.pipes,
      ["common", `weights_${w.dtype}`, "matmul_params", ...(this.cpuKernels ? ["matmul_rows"] : ["wg_reduce", "matmul_wg"])],
      [w.buffer, params, this.buf.state, x, y],
      grid,
    );
    // lm_head on the last token reads one row whatever the pass's size.
    return opts.fixedNtok === 1 ? { ...d, pipeline: d.one!.pipeline, bindGroup: d.one!.bindGroup } : d;
  }

  private normDispatch(gain: GPUBuffer, x: GPUBuffer, y: GPUBuffer, lastOnly: boolean): Dispatch {
    const H = this.config.hiddenSize;
    const pipeline = this.pipes.get(["common", "rmsnorm"]);
    const params = this.pipes.uniform([H, padCols(H) / 4, this.config.rmsNormEps, lastOnly ? 1 : 0], [2]);
    return {
      pipeline,
      bindGroup: this.pipes.bind(pipeline, [gain, params, this.buf.state, x, y]),
      grid: (n) => [lastOnly ? 1 : cdiv(n, 64), 1, 1],
    };
  }

  private embedDispatch(): Dispatch {
    const stride4 = padCols(this.config.hiddenSize) / 4;
    const pipeline = this.pipes.get(["common", `weights_${this.embed.dtype}`, "embed"]);
    const params = this.pipes.uniform([stride4, this.config.vocabSize, 0, 0]);
    return {
      pipeline,
      bindGroup: this.pipes.bind(pipeline, [this.embed.buffer, params, this.buf.state, this.buf.tokens, this.buf.x]),
      grid: (n) => [cdiv(stride4, 64), n, 1],
    };
  }

  /** A layer's attention half and the norm before its MLP: the part dense and sparse passes share. */
  private attentionDispatches(l: LayerWeights, i: number): Dispatch[] {
    const c = this.config;
    const b = this.buf;
    const qkvStride = padCols((c.numHeads + 2 * c.numKvHeads) * c.headDim);
    const qStride = padCols(c.numHeads * c.headDim);
    const kvStride = c.numKvHeads * c.headDim;
    const rope = this.pipes.get(["common", "rope_kv"]);
    const ropeParams = this.pipes.uniform([c.numHeads, c.numKvHeads, c.headDim, qkvStride, qStride, kvStride, 0, 0]);
    const attn = this.pipes.get(["common", "attention"]);
    const attnParams = this.pipes.uniform(
      [c.numHeads, c.numHeads / c.numKvHeads, c.headDim / 4, qStride / 4, kvStride / 4, qStride / 4, 1 / Math.sqrt(c.headDim), 0],
      [6],
    );
    return [
      this.normDispatch(l.inputNorm, b.x, b.h, false),
      this.matmul(l.qkv, b.h, b.qkv, {}),
      {
        pipeline: rope,
        bindGroup: this.pipes.bind(rope, [undefined, ropeParams, b.state, b.qkv, b.rope, b.q, l.k, l.v], `layer ${i} rope`),
        grid: (n) => [cdiv(c.numHeads + c.numKvHeads, 32), n, 1],
      },
      {
        pipeline: attn,
        bindGroup: this.pipes.bind(attn, [undefined, attnParams, b.state, b.q, l.k, l.v, b.o], `layer ${i} attention`),
        grid: (n) => [cdiv(c.numHeads, 32), n, 1],
      },
      this.matmul(l.o, b.o, b.x, { accumulate: true }),
      this.normDispatch(l.postNorm, b.x, b.h, false),
    ];
  }

  private argmaxDispatch(): Dispatch {
    const wg = this.cpuKernels ? 1 : 256;
    const pipeline = this.pipes.get(["common", "argmax"], { WG: wg });
    const params = this.pipes.uniform([this.config.vocabSize, 0, 0, 0]);
    return {
      pipeline,
      bindGroup: this.pipes.bind(pipeline, [undefined, params, this.buf.state, this.buf.logits, this.buf.tokens, this.buf.outIds]),
      grid: () => [1, 1, 1],
    };
  }

  private makeNllDispatch(): Dispatch {
    const pipeline = this.pipes.get(["common", "nll"]);
    const params = this.pipes.uniform([this.config.vocabSize, padCols(this.config.vocabSize), 0, 0]);
    return {
      pipeline,
      bindGroup: this.pipes.bind(pipeline, [undefined, params, this.buf.state, this.buf.logits, this.buf.targets, this.buf.nll]),
      grid: (n) => [cdiv(n, 64), 1, 1],
    };
  }

  // ---- running ----

  get position(): number {
    return this.pos;
  }

  private writeState(pos: number, ntok: number, step: number): void {
    this.device.queue.writeBuffer(this.buf.state, 0, new Uint32Array([pos, ntok, step, 0]));
  }

  private checkRoom(ntok: number): void {
    if (this.pos + ntok > this.contextLength) {
      throw new CatsError(
        `sequence of ${this.pos + ntok} tokens does not fit the model's context of ${this.contextLength} (max_position_embeddings)`,
      );
    }
  }

  private encodePass(pass: GPUComputePassEncoder, ntok: number, output: PassOutput): void {
    const sparse = this.thresholds !== null && ntok === 1 && this.sparseBody !== null;
    encodeDispatches(pass, sparse ? this.sparseBody! : this.body, ntok);
    if (this.thresholds !== null) this.statTokens += ntok;
    encodeDispatches(pass, this.tail[output], ntok);
  }

  private async submitAndRead(
    encoder: GPUCommandEncoder,
    staging: GPUBuffer | null,
    bytes: number,
    what: string,
  ): Promise<ArrayBuffer | null> {
    this.device.queue.submit([encoder.finish()]);
    if (!staging) {
      await this.device.queue.onSubmittedWorkDone();
      this.gpu.check(what);
      return null;
    }
    try {
      await staging.mapAsync(MAP_READ, 0, bytes);
    } catch (e) {
      this.gpu.check(what);
      throw new CatsError(`GPU readback failed during ${what}: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    this.gpu.check(what);
    return out;
  }

  /**
   * Weight bytes one decode step reads: every matrix whole, except W_up and W_down, which a sparse
   * step reads only for its active neurons (`activeFraction` per layer; null: dense).
   */
  weightBytesPerToken(activeFraction: number[] | null): number {
    let bytes = this.lmHead.bytes + this.embed.bytes / this.config.vocabSize;
    this.layers.forEach((l, i) => {
      const mlp = l.up.bytes + l.down.bytes;
      bytes += l.qkv.bytes + l.o.bytes + l.gate.bytes + mlp * (activeFraction ? activeFraction[i] : 1);
    });
    return bytes;
  }

  /**
   * Sets one CATS threshold per layer (null: dense). Decode steps then run the sparse kernels (when
   * the engine has them), batched passes the dense kernels with the same mask. Changeable between
   * submissions.
   */
  setThresholds(thresholds: number[] | null): void {
    if (thresholds !== null && thresholds.length !== this.config.numLayers) {
      throw new CatsError(`expected ${this.config.numLayers} thresholds (one per layer), got ${thresholds.length}`);
    }
    this.thresholds = thresholds ? [...thresholds] : null;
    this.mlps.forEach((m, i) => m.setThreshold(thresholds ? thresholds[i] : null));
  }

  /** Adds the GPU's active-neuron counters to the float64 totals and clears them. */
  private async foldActiveCounts(): Promise<void> {
    const L = this.config.numLayers;
    const staging = this.device.createBuffer({ size: L * 4, usage: Usage.MAP_READ | Usage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.buf.totals, 0, staging, 0, L * 4);
    const totals = new Uint32Array((await this.submitAndRead(enc, staging, L * 4, "sparsity stats"))!);
    staging.destroy();
    this.device.queue.writeBuffer(this.buf.totals, 0, new Uint32Array(L));
    totals.forEach((v, l) => (this.foldedTotals[l] += v));
  }

  /** Reads and clears the sparsity reached since the last call. */
  async takeSparsityStats(): Promise<SparsityStats> {
    const L = this.config.numLayers;
    await this.foldActiveCounts();
    const totals = [...this.foldedTotals];
    this.foldedTotals.fill(0);
    const tokens = this.statTokens;
    this.statTokens = 0;
    const inter = this.config.intermediateSize;
    const perLayer = totals.map((active) => (tokens > 0 ? 1 - active / (tokens * inter) : 0));
    const overall = perLayer.reduce((a, b) => a + b, 0) / L;
    return { tokens, perLayer, overall };
  }

  /**
   * Runs one window from position 0 and returns |silu(gate)| of every position and neuron, per
   * layer ([position][neuron]). One readback per pass, never per token.
   */
  async captureActivations(ids: number[]): Promise<Float32Array[]> {
    if (this.captureTokens === 0) throw new CatsError("this engine was loaded without activation capture (EngineOptions.capture)");
    this.reset();
    this.checkRoom(ids.length);
    const L = this.config.numLayers;
    const inter = this.config.intermediateSize;
    const out = Array.from({ length: L }, () => new Float32Array(ids.length * inter));
    const staging = this.device.createBuffer({ size: L * this.captureTokens * inter * 4, usage: Usage.MAP_READ | Usage.COPY_DST });
    for (let off = 0; off < ids.length; off += this.chunk) {
      const part = ids.slice(off, off + this.chunk);
      this.writeState(off, part.length, 0);
      this.device.queue.writeBuffer(this.buf.tokens, 0, new Uint32Array(part));
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      this.encodePass(pass, part.length, "none");
      pass.end();
      const bytes = L * this.captureTokens * inter * 4;
      enc.copyBufferToBuffer(this.buf.capture, 0, staging, 0, bytes);
      const data = new Float32Array((await this.submitAndRead(enc, staging, bytes, "calibration"))!);
      for (let l = 0; l < L; l++) {
        const base = l * this.captureTokens * inter;
        out[l].set(data.subarray(base, base + part.length * inter), off * inter);
      }
      this.pos = off + part.length;
    }
    staging.destroy();
    return out;
  }

  /** Starts a new sequence: forgets the KV cache contents (they are overwritten position by position). */
  reset(): void {
    this.pos = 0;
    this.step = 0;
  }

  /** Runs all but the last chunk of `ids` through the model, one submission per chunk, filling the KV cache. */
  private async prefillInner(ids: number[]): Promise<number[]> {
    this.checkRoom(ids.length);
    let rest = ids;
    while (rest.length > this.chunk) {
      const part = rest.slice(0, this.chunk);
      this.writeState(this.pos, part.length, this.step);
      this.device.queue.writeBuffer(this.buf.tokens, 0, new Uint32Array(part));
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      this.encodePass(pass, part.length, "none");
      pass.end();
      await this.submitAndRead(enc, null, 0, "prefill");
      this.pos += part.length;
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
    const last = await this.prefillInner(ids);
    this.writeState(this.pos, last.length, this.step);
    this.device.queue.writeBuffer(this.buf.tokens, 0, new Uint32Array(last));
    return this.finishStep(last.length, withLogits, "prefill");
  }

  /** One decode step on the token the previous step chose (or that setNextToken() wrote). */
  async decode(withLogits = false): Promise<{ token: number; logits: Float32Array | null }> {
    this.checkRoom(1);
    this.writeState(this.pos, 1, this.step);
    return this.finishStep(1, withLogits, "decode");
  }

  private async finishStep(ntok: number, withLogits: boolean, what: string): Promise<{ token: number; logits: Float32Array | null }> {
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.encodePass(pass, ntok, "last");
    encodeDispatches(pass, [this.argmax], 1);
    pass.end();
    const V = this.config.vocabSize;
    if (withLogits) enc.copyBufferToBuffer(this.buf.logits, 0, this.staging.logits, 0, V * 4);
    enc.copyBufferToBuffer(this.buf.outIds, this.step * 4, this.staging.ids, 0, 4);
    const idBuf = await this.submitAndRead(enc, this.staging.ids, 4, what);
    let logits: Float32Array | null = null;
    if (withLogits) {
      await this.staging.logits.mapAsync(MAP_READ, 0, V * 4);
      logits = new Float32Array(this.staging.logits.getMappedRange(0, V * 4).slice(0));
      this.staging.logits.unmap();
    }
    this.pos += ntok;
    this.step += 1;
    if (this.step >= this.maxChain) this.step = 0;
    return { token: new Uint32Array(idBuf!)[0], logits };
  }

  /** Chains `count` greedy decode steps in one submission; returns the chosen ids in order. */
  async decodeGreedy(count: number): Promise<number[]> {
    if (count <= 0) return [];
    const n = Math.min(count, this.maxChain);
    this.checkRoom(n);
    if (this.step + n > this.maxChain) this.step = 0;
    this.writeState(this.pos, 1, this.step);
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < n; i++) {
      this.encodePass(pass, 1, "last");
      encodeDispatches(pass, [this.argmax], 1);
    }
    pass.end();
    enc.copyBufferToBuffer(this.buf.outIds, this.step * 4, this.staging.ids, 0, n * 4);
    const out = await this.submitAndRead(enc, this.staging.ids, n * 4, "decode");
    this.pos += n;
    this.step += n;
    const ids = [...new Uint32Array(out!)];
    return count > n ? ids.concat(await this.decodeGreedy(count - n)) : ids;
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
      this.writeState(off, part.length, 0);
      this.device.queue.writeBuffer(this.buf.tokens, 0, new Uint32Array(part));
      this.device.queue.writeBuffer(this.buf.targets, 0, new Uint32Array(targets));
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      this.encodePass(pass, part.length, "all");
      encodeDispatches(pass, [this.nllDispatch], part.length);
      pass.end();
      enc.copyBufferToBuffer(this.buf.nll, 0, this.staging.nll, 0, part.length * 4);
      const nll = new Float32Array((await this.submitAndRead(enc, this.staging.nll, part.length * 4, "eval"))!);
      for (let t = 0; t < part.length && off + t < out.length; t++) out[off + t] = nll[t];
      this.pos = off + part.length;
      // A chunk adds at most chunk * inter per layer, far below 2^32; folding each one keeps long evals exact.
      if (this.thresholds !== null) await this.foldActiveCounts();
    }
    return out;
  }

  /** Logits at every position of `ids` (at most one chunk) from position 0: for tests and debugging. */
  async allLogits(ids: number[]): Promise<Float32Array[]> {
    if (ids.length > this.chunk) throw new CatsError(`allLogits takes at most ${this.chunk} tokens`);
    this.reset();
    this.checkRoom(ids.length);
    this.writeState(0, ids.length, 0);
    this.device.queue.writeBuffer(this.buf.tokens, 0, new Uint32Array(ids));
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.encodePass(pass, ids.length, "all");
    pass.end();
    const V = this.config.vocabSize;
    const stride = padCols(V);
    const bytes = ids.length * stride * 4;
    const staging = this.device.createBuffer({ size: bytes, usage: Usage.MAP_READ | Usage.COPY_DST });
    enc.copyBufferToBuffer(this.buf.logits, 0, staging, 0, bytes);
    const data = new Float32Array((await this.submitAndRead(enc, staging, bytes, "forward"))!);
    staging.destroy();
    this.pos = ids.length;
    return ids.map((_, t) => data.slice(t * stride, t * stride + V));
  }
}
