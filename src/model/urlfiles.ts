import { CatsError } from "../errors.js";
import { memorySource } from "./bytesource.js";
import type { ModelFiles } from "./checkpoint.js";

/** A model directory served over HTTP (the bench server maps /models/NAME/ to it). */
export function urlFiles(base: string): ModelFiles {
  const url = (name: string) => `${base.replace(/\/$/, "")}/${name}`;
  const get = async (name: string): Promise<Response> => {
    const res = await fetch(url(name));
    if (!res.ok) throw new CatsError(`${url(name)}: HTTP ${res.status}`);
    return res;
  };
  return {
    location: base,
    pathOf: url,
    async exists(name) {
      return (await fetch(url(name), { method: "HEAD" })).ok;
    },
    readText: async (name) => (await get(name)).text(),
    // Whole-file fetches: fine for the checkpoints this page benchmarks (stories260K, small synthetic ones).
    openBinary: async (name) => memorySource(url(name), new Uint8Array(await (await get(name)).arrayBuffer())),
  };
}
