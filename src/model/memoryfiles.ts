import { CatsError } from "../errors.js";
import { memorySource } from "./bytesource.js";
import type { ModelFiles } from "./checkpoint.js";

/** Model files held in memory: for harnesses and microbenchmarks that build weights on the fly. */
export function memoryFiles(location: string, files: Record<string, Uint8Array | string>): ModelFiles {
  const get = (name: string): Uint8Array | string => {
    const f = files[name];
    if (f === undefined) throw new CatsError(`${location}/${name}: no such file`);
    return f;
  };
  return {
    location,
    pathOf: (name) => `${location}/${name}`,
    exists: async (name) => name in files,
    async readText(name) {
      const f = get(name);
      return typeof f === "string" ? f : new TextDecoder().decode(f);
    },
    async openBinary(name) {
      const f = get(name);
      return memorySource(`${location}/${name}`, typeof f === "string" ? new TextEncoder().encode(f) : f);
    },
  };
}
