import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { CatsError } from "../errors.js";
import type { ModelFiles } from "./checkpoint.js";
import { fileSource } from "./nodesource.js";

export function directoryFiles(dir: string): ModelFiles {
  return {
    location: dir,
    pathOf: (name) => join(dir, name),
    async exists(name) {
      try {
        await access(join(dir, name));
        return true;
      } catch {
        return false;
      }
    },
    async readText(name) {
      try {
        return await readFile(join(dir, name), "utf8");
      } catch (e) {
        throw new CatsError(`${join(dir, name)}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
      }
    },
    openBinary: (name) => fileSource(join(dir, name)),
  };
}
