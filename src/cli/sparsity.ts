import { readJsonFile } from "../files.js";
import { checkThresholdsFile, sparsityMiss, thresholdsForLevel, type LayerThresholds } from "../cats/thresholds.js";
import { notice } from "./notice.js";
import type { SparsityStats } from "../engine/llama.js";
import { CatsError } from "../errors.js";
import type { LoadedModel } from "../node.js";

export interface SparsityFlags {
  thresholds?: string;
  sparsity?: number;
}

/** Both flags or neither: a level needs a thresholds file, and a file needs a level. */
export function wantsSparsity(flags: SparsityFlags): boolean {
  if ((flags.thresholds === undefined) !== (flags.sparsity === undefined)) {
    throw new CatsError("--thresholds FILE and --sparsity K go together");
  }
  return flags.thresholds !== undefined;
}

export const readThresholdsFile = readJsonFile;

/** Reads the thresholds file, checks it was made for this model, and arms the engine with the level's thresholds. */
export async function applySparsity(lm: LoadedModel, flags: SparsityFlags): Promise<LayerThresholds | null> {
  if (!wantsSparsity(flags)) return null;
  const file = flags.thresholds!;
  const t = await checkThresholdsFile(await readThresholdsFile(file), file, lm.checkpoint);
  const level = thresholdsForLevel(t, flags.sparsity!, file);
  lm.engine.setThresholds(level.thresholds);
  return level;
}

/** The `sparsity` object of --json outputs. */
export function sparsityReport(level: LayerThresholds, stats: SparsityStats): Record<string, unknown> {
  return {
    target: level.level,
    thresholds_from: level.source,
    thresholds: level.thresholds,
    tokens: stats.tokens,
    overall: stats.overall,
    per_layer: stats.perLayer,
  };
}

/** Takes the sparsity counters, warns when they miss the requested level, and returns the `sparsity` JSON object. */
export async function measuredSparsity(lm: LoadedModel, level: LayerThresholds, file: string): Promise<Record<string, unknown>> {
  const stats = await lm.engine.takeSparsityStats();
  const miss = sparsityMiss(level, stats.overall, file);
  if (miss) notice(miss);
  return sparsityReport(level, stats);
}
