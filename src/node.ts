import { totalmem } from "node:os";
import { CatsError } from "./errors.js";
import { createGpu, type GpuContext } from "./gpu/device.js";
import { nodeKernelSource } from "./gpu/nodekernels.js";
import { checkpointBytes, LlamaEngine, tunedKernelsHash, type EngineOptions } from "./engine/llama.js";
import type { UpLayout } from "./engine/load.js";
import { tuneKey, type TuneCase, type TuneProgress } from "./gpu/autotune.js";
import { checkWeightsFinite } from "./model/check-weights.js";
import { openCheckpoint, type Checkpoint } from "./model/checkpoint.js";
import { directoryFiles } from "./model/nodefiles.js";
import { resolveModelDir } from "./model/resolve.js";
import { TextTokenizer } from "./tokenizer/tokenizer.js";
import { parseOverrides } from "./gpu/variants.js";
import { TuneFileStore } from "./gpu/tune-file.js";

export interface LoadedModel {
  dir: string;
  gpu: GpuContext;
  checkpoint: Checkpoint;
  engine: LlamaEngine;
  tokenizer: TextTokenizer;
  loadMs: number;
  close(): Promise<void>;
}

export interface LoadOptions {
  capture?: boolean;
  flavour?: string;
  chunk?: number;
  gpu?: GpuContext;
  /** Variant overrides per op, "op=variant,..." (the --variant flags; CATS_VARIANTS otherwise). */
  variants?: string;
  maxBindingBytes?: number;
  /** Matrices read whole every token in row blocks (EngineOptions.rowBlocks); default: per kernel flavour. */
  rowBlocks?: boolean;
  /** Where W_up goes (EngineOptions.upLayout): "rows" (default) for CATS, "blocks" for dense only, "both". */
  upLayout?: UpLayout;
  /** Scan every tensor for NaN and infinity before uploading (--check-weights). */
  checkWeights?: boolean;
  /** Memory that models loaded beside this one already hold (cats bench --compare), for the CPU adapter's memory check. */
  alongsideBytes?: number;
  /** Positions the KV cache holds (--context); default: max_position_embeddings, at most DEFAULT_CONTEXT_CAP. */
  context?: number;
  /**
   * Measure kernel variants for this adapter on first use and cache the choices
   * ($CATS_CACHE_DIR/autotune.json); default on unless CATS_AUTOTUNE=off.
   */
  tune?: boolean;
  /** Tune only the ops of batched passes, for commands that run nothing else (calibrate, eval). */
  tuneBatchedOnly?: boolean;
  /** Notices for the user (a tuning run starting, an unreadable cache); default: none. */
  notice?: (message: string) => void;
  /** How far a first-use tuning run has come, as each case starts (for a progress bar). */
  onTuneProgress?: (progress: TuneProgress) => void;
}

/** The tuning store and callbacks of a load: one notice when measuring starts, then progress per case. */
interface NodeTuning {
  store: TuneFileStore;
  onCase: (c: TuneCase, progress: TuneProgress) => void;
  /** Tells the user, once, that a measurement is under way. */
  announce: () => void;
}

function tuneOptions(options: LoadOptions): NodeTuning {
  const store = new TuneFileStore(undefined, options.notice);
  let told = false;
  const announce = () => {
    if (!told) options.notice?.(`measuring kernel variants for this adapter and model shapes (once; kept in ${store.path})`);
    told = true;
  };
  return {
    store,
    announce,
    onCase: (_c, progress) => {
      announce();
      options.onTuneProgress?.(progress);
    },
  };
}

const modelShapeKey = (ckpt: Checkpoint): string => {
  const c = ckpt.config;
  const dtype = ckpt.tensors.get("model.embed_tokens.weight")?.dtype ?? "quantized";
  return `${c.numLayers} x (${c.hiddenSize} x ${c.intermediateSize}), ${c.numHeads}/${c.numKvHeads} heads, vocab ${c.vocabSize}, ${dtype}`;
};

/** Median ms per greedy token over a few chained decode steps, engines interleaved round by round. */
async function decodeMs(engines: LlamaEngine[], bos: number): Promise<number[]> {
  const samples = engines.map(() => [] as number[]);
  for (let round = 0; round < 4; round++) {
    for (const [i, e] of engines.entries()) {
      e.reset();
      await e.prefill([bos]);
      const t0 = performance.now();
      await e.decodeGreedy(8);
      if (round > 0) samples[i].push((performance.now() - t0) / 8);
    }
  }
  return samples.map((s) => s.sort((a, b) => a - b)[Math.floor(s.length / 2)]);
}

/**
 * Opens the device the model decodes fastest on. For a CPU driver that is a question of its worker
 * threads: handing each dispatch to workers costs more than the work of a small model, while a
 * large one needs every core. The first run of a model measures decode steps both ways and keeps
 * the answer with the kernel tuning; LP_NUM_THREADS set by the user wins.
 */
/** A decode token slower than this on the driver's workers is not compared with running inline. */
const SKIP_INLINE_MS = 10;

async function loadOnFastestDevice(
  ckpt: Checkpoint,
  options: EngineOptions,
  flavour: string | undefined,
  announce: () => void,
  alongside = 0,
): Promise<{ gpu: GpuContext; engine: LlamaEngine }> {
  const gpu = await createGpu({ flavour });
  checkMemory(ckpt, gpu, options.upLayout, alongside);
  const store = options.tune?.store;
  if (!store || gpu.flavour !== "cpu" || process.env.LP_NUM_THREADS !== undefined)
    return { gpu, engine: await LlamaEngine.load(gpu, ckpt, options) };
  const key = tuneKey(gpu, tunedKernelsHash(options.kernels));
  const model = modelShapeKey(ckpt);
  const known = store.load(key)?.driverThreads?.[model];
  if (known === null) return { gpu, engine: await LlamaEngine.load(gpu, ckpt, options) };
  if (known !== undefined) {
    gpu.destroy();
    const chosen = await createGpu({ flavour, driverThreads: known });
    return { gpu: chosen, engine: await LlamaEngine.load(chosen, ckpt, options) };
  }
  announce();
  const pooled = await LlamaEngine.load(gpu, ckpt, options);
  const bos = ckpt.config.bosTokenId ?? 0;
  const remember = async (threads: 0 | null) => {
    const record = store.load(key) ?? { choices: {} };
    await store.save(key, { ...record, driverThreads: { ...record.driverThreads, [model]: threads } });
  };
  // Handing a dispatch to the workers costs about 25 µs: where a token takes ten times that per
  // dispatch, running inline cannot win, and measuring it would load and tune the model again. The
  // 10 ms floor keeps a slow spell of a shared machine from deciding it for a small model (stories260K,
  // 8 dispatches a token, once measured 2 ms pooled in one and was kept on the slower workers).
  const [alonePooledMs] = await decodeMs([pooled], bos);
  if (alonePooledMs > Math.max(SKIP_INLINE_MS, pooled.decodeSteps.length * 0.025 * 10)) {
    await remember(null);
    return { gpu, engine: pooled };
  }
  const single = await createGpu({ flavour, driverThreads: 0 });
  const inline = await LlamaEngine.load(single, ckpt, options);
  const [pooledMs, inlineMs] = await decodeMs([pooled, inline], bos);
  // Keep the driver's default unless running inline is clearly faster.
  const useInline = inlineMs < pooledMs * 0.9;
  await remember(useInline ? 0 : null);
  (useInline ? gpu : single).destroy();
  return useInline ? { gpu: single, engine: inline } : { gpu, engine: pooled };
}

/** The default KV cache length when config.json allows more: what fits comfortably beside the weights. */
export const DEFAULT_CONTEXT_CAP = 4096;

/**
 * The checkpoint as the engine will run it: max_position_embeddings replaced by the context the KV
 * cache is allocated for (a config claiming 2^53 positions must not size buffers).
 */
function withContext(ckpt: Checkpoint, context: number | undefined): Checkpoint {
  const trained = ckpt.config.maxPositions;
  if (context !== undefined && context > trained) {
    throw new CatsError(
      `--context ${context}: ${ckpt.files.pathOf("config.json")} allows at most max_position_embeddings ${trained} positions`,
    );
  }
  const positions = context ?? Math.min(trained, DEFAULT_CONTEXT_CAP);
  return positions === trained ? ckpt : { ...ckpt, config: { ...ckpt.config, maxPositions: positions } };
}

/**
 * Refuses a model that cannot fit before a byte is uploaded. A CPU driver's buffers live in system
 * memory, so that is the budget there; a GPU's memory is not visible to WebGPU, so there an
 * out-of-memory error at upload is what stops the load.
 */
function checkMemory(ckpt: Checkpoint, gpu: GpuContext, upLayout?: UpLayout, alongside = 0): void {
  if (gpu.flavour !== "cpu") return;
  const { weights, kv } = modelMemory(ckpt, upLayout);
  const need = weights + kv;
  const have = totalmem();
  if (alongside + need > have * 0.9) {
    const gb = (b: number) => (b / 1e9).toFixed(1);
    const beside = alongside > 0 ? `, beside ${gb(alongside)} GB of models already loaded,` : "";
    throw new CatsError(
      `${ckpt.files.location}: the model needs ${gb(need)} GB (weights ${gb(weights)} GB, KV cache ${gb(kv)} GB for ${ckpt.config.maxPositions} positions)${beside} but this CPU adapter has ${gb(have)} GB of memory`,
    );
  }
}

/** The bytes a loaded model holds: its weights as uploaded (UpLayout "both" keeps a second copy of every W_up) and its f32 KV cache. */
export function modelMemory(ckpt: Checkpoint, upLayout?: UpLayout): { weights: number; kv: number } {
  const c = ckpt.config;
  const upCopies =
    upLayout === "both"
      ? [...ckpt.tensors].filter(([name]) => name.includes(".mlp.up_proj.")).reduce((n, [, t]) => n + t.end - t.begin, 0)
      : 0;
  return { weights: checkpointBytes(ckpt) + upCopies, kv: 2 * c.numLayers * c.maxPositions * c.numKvHeads * c.headDim * 4 };
}

/** Resolves `model` (a directory or a name), opens it, uploads it to a Dawn device. */
export async function loadModel(model: string | undefined, options: LoadOptions = {}): Promise<LoadedModel> {
  const t0 = performance.now();
  const dir = resolveModelDir(model);
  const files = directoryFiles(dir);
  const opened = await openCheckpoint(files);
  try {
    const checkpoint = withContext(opened, options.context);
    if (options.checkWeights) await checkWeightsFinite(checkpoint);
    const tokenizer = await TextTokenizer.load(files, checkpoint.config);
    const tuning = (options.tune ?? process.env.CATS_AUTOTUNE !== "off") ? tuneOptions(options) : null;
    const engineOptions: EngineOptions = {
      kernels: nodeKernelSource,
      chunk: options.chunk,
      capture: options.capture,
      variants: parseOverrides(options.variants ?? process.env.CATS_VARIANTS),
      maxBindingBytes: options.maxBindingBytes,
      rowBlocks: options.rowBlocks,
      upLayout: options.upLayout,
      tune: tuning ? { ...tuning, batchedOnly: options.tuneBatchedOnly } : null,
    };
    const { gpu, engine } = options.gpu
      ? {
          gpu: options.gpu,
          engine:
            (checkMemory(checkpoint, options.gpu, engineOptions.upLayout, options.alongsideBytes),
            await LlamaEngine.load(options.gpu, checkpoint, engineOptions)),
        }
      : await loadOnFastestDevice(checkpoint, engineOptions, options.flavour, tuning?.announce ?? (() => {}), options.alongsideBytes);
    return {
      dir,
      gpu,
      checkpoint,
      engine,
      tokenizer,
      loadMs: performance.now() - t0,
      async close() {
        await opened.close();
      },
    };
  } catch (e) {
    await opened.close();
    throw e;
  }
}
