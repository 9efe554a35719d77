/**
 * cats as a library in the browser (navigator.gpu): no dawn.node, no node: imports.
 *
 *   const model = await loadModel("/models/stories260K/");
 *   for await (const piece of model.generate("Once upon a time")) output.textContent += piece.text;
 */
import { CatsModel } from "./api/model.js";
import { checkThresholdsFile } from "./cats/thresholds.js";
import { LlamaEngine } from "./engine/llama.js";
import { CatsError } from "./errors.js";
import { createGpu } from "./gpu/device.js";
import type { TuneCase, TuneProgress } from "./gpu/autotune.js";
import { fetchKernels } from "./gpu/kernel-files.js";
import type { KernelSource } from "./gpu/kernelsource.js";
import { LocalStorageTuneStore } from "./gpu/tune-storage.js";
import { openCheckpoint, type ModelFiles } from "./model/checkpoint.js";
import { memoryFiles } from "./model/memoryfiles.js";
import { urlFiles } from "./model/urlfiles.js";
import { TextTokenizer } from "./tokenizer/tokenizer.js";

export { CatsModel, collect } from "./api/model.js";
export type { ChatMessage, ChatOptions, GeneratedPiece, GenerateOptions, GenerationResult } from "./api/model.js";
export { CatsError } from "./errors.js";
export { KERNEL_FILES } from "./gpu/kernel-files.js";
export type { TuneProgress } from "./gpu/autotune.js";
export type { KernelSource } from "./gpu/kernelsource.js";

export interface BrowserLoadOptions {
  /** A thresholds file: its URL, or its parsed JSON. */
  thresholds?: string | URL | object;
  /** The CATS level generations run at unless they say otherwise (default 0). */
  sparsity?: number;
  /**
   * The WGSL kernels: a bundler-provided source (e.g. Vite's import.meta.glob of kernels/*.wgsl),
   * or by default fetched from the package's kernels/ folder next to this module.
   */
  kernels?: KernelSource;
  /** Measure kernel variants once per adapter and keep them in localStorage (default true). */
  tune?: boolean;
  notice?: (message: string) => void;
  /** How far a first-use tuning run has come, heard as each case starts (for a progress indicator). */
  onTuneProgress?: (progress: TuneProgress) => void;
}

/** A model from a URL prefix (a directory served over HTTP) or from files already in memory. */
export async function loadModel(
  source: string | URL | Record<string, Uint8Array | string>,
  options: BrowserLoadOptions = {},
): Promise<CatsModel> {
  const files: ModelFiles = typeof source === "string" || source instanceof URL ? urlFiles(String(source)) : memoryFiles("memory", source);
  const kernels = options.kernels ?? (await fetchKernels(new URL("../../kernels/", import.meta.url)));
  const gpu = await createGpu();
  const ckpt = await openCheckpoint(files);
  try {
    const tokenizer = await TextTokenizer.load(files, ckpt.config);
    const storage = (globalThis as { localStorage?: Storage }).localStorage;
    const notice = options.notice ?? (() => {});
    let told = false;
    const tune =
      options.tune === false || !storage
        ? null
        : {
            store: new LocalStorageTuneStore(storage, "cats-autotune", notice),
            onCase: (_c: TuneCase, progress: TuneProgress) => {
              if (!told) notice("measuring kernel variants for this adapter (once; kept in localStorage)");
              told = true;
              options.onTuneProgress?.(progress);
            },
          };
    // Without thresholds the model only decodes dense: W_up in row blocks where they apply (UpLayout).
    const engine = await LlamaEngine.load(gpu, ckpt, { kernels, tune, upLayout: options.thresholds === undefined ? "blocks" : "rows" });
    let thresholds = null;
    if (options.thresholds !== undefined) {
      const t = options.thresholds;
      const name = typeof t === "object" && !(t instanceof URL) ? "thresholds" : String(t);
      const raw = typeof t === "object" && !(t instanceof URL) ? t : await (await fetch(t)).json();
      thresholds = { file: await checkThresholdsFile(raw, name, ckpt), name };
    } else if ((options.sparsity ?? 0) > 0) throw new CatsError("sparsity above 0 needs thresholds");
    return new CatsModel({
      name: files.location.replace(/\/$/, "").split("/").pop() ?? files.location,
      files,
      config: ckpt.config,
      engine,
      tokenizer,
      gpu,
      thresholds,
      sparsity: options.sparsity ?? 0,
      close: async () => {
        await ckpt.close();
        gpu.destroy();
      },
    });
  } catch (e) {
    await ckpt.close();
    gpu.destroy();
    throw e;
  }
}
