import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readTextFile } from "../files.js";
import type { ModelFiles } from "./checkpoint.js";
import { fileSource } from "./nodesource.js";

export function directoryFiles(dir: string): ModelFiles {
  return {
    location: dir,
    pathOf: (name) => join(dir, name),
    // Present means present in any form: a directory or FIFO under a model file's name is then
    // refused by name when it is read, rather than skipped.
    async exists(name) {
      return stat(join(dir, name)).then(
        () => true,
        () => false,
      );
    },
    readText: (name) => readTextFile(join(dir, name)),
    openBinary: (name) => fileSource(join(dir, name)),
  };
}
