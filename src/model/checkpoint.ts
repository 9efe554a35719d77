import { CatsError } from "../errors.js";
import type { ByteSource } from "./bytesource.js";
import { parseLlamaConfig, type LlamaConfig } from "./config.js";
import { readSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from "./safetensors.js";

/** Where a model's files come from: a directory in Node, a URL prefix in the browser. */
export interface ModelFiles {
  /** Human-readable location, used in messages. */
  readonly location: string;
  /** Path or URL of a file, for error messages. */
  pathOf(name: string): string;
  exists(name: string): Promise<boolean>;
  readText(name: string): Promise<string>;
  openBinary(name: string): Promise<ByteSource>;
}

export interface CheckpointTensor extends TensorInfo {
  source: ByteSource;
}

export interface Checkpoint {
  files: ModelFiles;
  config: LlamaConfig;
  configText: string;
  headers: SafetensorsHeader[];
  tensors: Map<string, CheckpointTensor>;
  /** Reads one tensor's raw bytes. */
  read(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

async function readJson(files: ModelFiles, name: string): Promise<{ text: string; json: unknown }> {
  const text = await files.readText(name);
  try {
    return { text, json: JSON.parse(text) };
  } catch (e) {
    throw new CatsError(`${files.pathOf(name)}: not valid JSON (${(e as Error).message})`);
  }
}

/** The safetensors files of a checkpoint: one file, or the shards named by model.safetensors.index.json. */
async function shardNames(files: ModelFiles): Promise<string[]> {
  if (await files.exists("model.safetensors")) return ["model.safetensors"];
  const indexName = "model.safetensors.index.json";
  if (!(await files.exists(indexName))) {
    throw new CatsError(`${files.location}: no model.safetensors or ${indexName} found`);
  }
  const { json } = await readJson(files, indexName);
  const map = (json as { weight_map?: unknown }).weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new CatsError(`${files.pathOf(indexName)}: field "weight_map": expected an object of tensor name -> file`);
  }
  const names = new Set<string>();
  for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\") || !shard.endsWith(".safetensors")) {
      throw new CatsError(
        `${files.pathOf(indexName)}: field "weight_map.${tensor}": expected a .safetensors file name in the same directory, got ${JSON.stringify(shard)}`,
      );
    }
    names.add(shard);
  }
  return [...names].sort();
}

export async function openCheckpoint(files: ModelFiles): Promise<Checkpoint> {
  if (!(await files.exists("config.json"))) throw new CatsError(`${files.location}: no config.json (is this a model directory?)`);
  const { text: configText, json } = await readJson(files, "config.json");
  const config = parseLlamaConfig(json, files.pathOf("config.json"));
  const sources: ByteSource[] = [];
  const headers: SafetensorsHeader[] = [];
  const tensors = new Map<string, CheckpointTensor>();
  try {
    for (const shard of await shardNames(files)) {
      const src = await files.openBinary(shard);
      sources.push(src);
      const header = await readSafetensorsHeader(src);
      headers.push(header);
      for (const t of header.tensors.values()) {
        if (tensors.has(t.name)) throw new CatsError(`${src.name}: tensor "${t.name}" is also in ${tensors.get(t.name)!.source.name}`);
        tensors.set(t.name, { ...t, source: src });
      }
    }
  } catch (e) {
    await Promise.all(sources.map((s) => s.close()));
    throw e;
  }
  return {
    files,
    config,
    configText,
    headers,
    tensors,
    async read(name) {
      const t = tensors.get(name);
      if (!t) throw new CatsError(`${files.location}: tensor "${name}" not found in the checkpoint`);
      return t.source.read(t.begin, t.end - t.begin);
    },
    async close() {
      await Promise.all(sources.map((s) => s.close()));
    },
  };
}
