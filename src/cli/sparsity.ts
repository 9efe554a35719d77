import { CatsError } from "../errors.js";
import { readJsonFile } from "../files.js";

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
