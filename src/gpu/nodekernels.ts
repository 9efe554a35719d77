import { readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../model/resolve.js";
import type { KernelSource } from "./kernelsource.js";

const cache = new Map<string, string>();

export const nodeKernelSource: KernelSource = (name) => {
  let text = cache.get(name);
  if (text === undefined) {
    text = readFileSync(join(projectRoot(), "kernels", `${name}.wgsl`), "utf8");
    cache.set(name, text);
  }
  return text;
};
