import { loadModel, type CatsModel, type LoadModelOptions } from "../index.js";
import { DEFAULT_MODEL } from "../model/resolve.js";
import { notice } from "./notice.js";
import { withTuningBar } from "./tuning-bar.js";
import { wantsSparsity, type SparsityFlags } from "./sparsity.js";

/** The flags every command that runs a model through the library takes. */
export interface ModelFlags extends SparsityFlags {
  model?: string;
  kernels?: "cpu" | "gpu";
  variant?: string;
  context?: number;
  checkWeights?: boolean;
}

/** Loads the model the flags name, with CATS thresholds when both --thresholds and --sparsity are given. */
export async function openModel(flags: ModelFlags, options: Pick<LoadModelOptions, "tuneBatchedOnly"> = {}): Promise<CatsModel> {
  wantsSparsity(flags);
  return withTuningBar((onTuneProgress) =>
    loadModel(flags.model ?? DEFAULT_MODEL, {
      ...options,
      thresholds: flags.thresholds,
      sparsity: flags.sparsity,
      kernels: flags.kernels,
      variants: flags.variant,
      context: flags.context,
      checkWeights: flags.checkWeights,
      notice,
      onTuneProgress,
    }),
  );
}
