/**
 * cats as a library, for Node (Dawn through the `webgpu` package):
 *
 *   const model = await loadModel("stories260K");
 *   for await (const piece of model.generate("Once upon a time", { maxTokens: 32 })) process.stdout.write(piece.text);
 *   await model.dispose();
 */
import { basename } from "node:path";
import { CatsModel } from "./api/model.js";
import { checkThresholdsFile } from "./cats/thresholds.js";
import { CatsError } from "./errors.js";
import { readJsonFile } from "./files.js";
import { directoryFiles } from "./model/nodefiles.js";
import type { TuneProgress } from "./gpu/autotune.js";
import { loadModel as openModel } from "./node.js";

export { CatsModel, collect } from "./api/model.js";
export type { ChatMessage, ChatOptions, GeneratedPiece, GenerateOptions, GenerationResult } from "./api/model.js";
export type { PerplexityResult } from "./engine/evaluate.js";
export { CatsError } from "./errors.js";
export type { TuneProgress } from "./gpu/autotune.js";

export interface LoadModelOptions {
  /** A thresholds file from `cats calibrate`: makes sparsity levels above 0 available. */
  thresholds?: string;
  /** The CATS level generations run at unless they say otherwise (default 0, dense). */
  sparsity?: number;
  /** Force the kernel flavour ("cpu" or "gpu"); default: chosen for the adapter. */
  kernels?: "cpu" | "gpu";
  /** Variant overrides, "op=variant,..." as cats info lists them. */
  variants?: string;
  /** Positions of the KV cache (default: max_position_embeddings, at most 4096). */
  context?: number;
  /** Scan every weight for NaN and infinity before loading. */
  checkWeights?: boolean;
  /** Measure kernel variants on first use and cache them (default true; CATS_AUTOTUNE=off turns it off). */
  tune?: boolean;
  /**
   * Measure only the ops of batched passes, for a model that will only be evaluated (`eval()`), so a
   * first run does not time decode kernels it never runs; a later load that decodes measures the rest.
   */
  tuneBatchedOnly?: boolean;
  /** Where notices go (first-use tuning, warnings); default: nowhere. */
  notice?: (message: string) => void;
  /**
   * How far a first-use tuning run has come, heard as each case starts (the CLI draws a progress
   * bar): on a CPU adapter a 7B-shaped model measures for minutes.
   */
  onTuneProgress?: (progress: TuneProgress) => void;
}

/**
 * Loads a model directory, or a name looked up in weights/, $CATS_MODELS and the Hugging Face
 * cache, onto the fastest WebGPU adapter Dawn finds.
 */
export async function loadModel(source: string, options: LoadModelOptions = {}): Promise<CatsModel> {
  if (options.sparsity !== undefined && options.sparsity > 0 && !options.thresholds) {
    throw new CatsError("sparsity above 0 needs thresholds (a file from cats calibrate)");
  }
  const lm = await openModel(source, {
    // Without thresholds the model only decodes dense: W_up in row blocks where they apply (UpLayout).
    upLayout: options.thresholds ? "rows" : "blocks",
    flavour: options.kernels,
    variants: options.variants,
    context: options.context,
    checkWeights: options.checkWeights,
    tune: options.tune,
    tuneBatchedOnly: options.tuneBatchedOnly,
    notice: options.notice,
    onTuneProgress: options.onTuneProgress,
  });
  try {
    const thresholds = options.thresholds
      ? {
          file: await checkThresholdsFile(await readJsonFile(options.thresholds), options.thresholds, lm.checkpoint),
          name: options.thresholds,
        }
      : null;
    const model = new CatsModel({
      name: basename(lm.dir),
      files: directoryFiles(lm.dir),
      config: lm.checkpoint.config,
      engine: lm.engine,
      tokenizer: lm.tokenizer,
      gpu: lm.gpu,
      thresholds,
      sparsity: options.sparsity ?? 0,
      close: async () => {
        await lm.close();
        lm.gpu.destroy();
      },
    });
    return model;
  } catch (e) {
    await lm.close();
    throw e;
  }
}
