import { CatsError } from "../errors.js";
import type { ByteSource } from "./bytesource.js";
import { parseLlamaConfig, type LlamaConfig } from "./config.js";
import { parseQuantConfig } from "./quant-config.js";
import { quoted } from "./describe.js";
import { GPTQ_PARTS } from "./gptq.js";
import { parseJson } from "./json.js";
import { isOnnxDirectory, openOnnxCheckpoint } from "./onnx/checkpoint.js";
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

function bad(message: string): never {
  throw new CatsError(message);
}

async function readJson(files: ModelFiles, name: string): Promise<{ text: string; json: unknown }> {
  const text = await files.readText(name);
  return { text, json: parseJson(text, (where) => bad(`${files.pathOf(name)}: not valid JSON${where}`)) };
}

/** The safetensors files of a checkpoint: one file, or the shards named by model.safetensors.index.json. */
async function shardNames(files: ModelFiles): Promise<string[]> {
  if (await files.exists("model.safetensors")) return ["model.safetensors"];
  const indexName = "model.safetensors.index.json";
  if (!(await files.exists(indexName))) {
    throw new CatsError(`${files.location}: no model.safetensors or ${indexName} found`);
  }
  const { json } = await readJson(files, indexName);
  const map = typeof json === "object" && json !== null ? (json as { weight_map?: unknown }).weight_map : undefined;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new CatsError(`${files.pathOf(indexName)}: field "weight_map": expected an object of tensor name -> file`);
  }
  const names = new Set<string>();
  for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\") || !shard.endsWith(".safetensors")) {
      throw new CatsError(
        `${files.pathOf(indexName)}: field "weight_map.${quoted(tensor).slice(1, -1)}": expected a .safetensors file name in the same directory, got ${typeof shard === "string" ? quoted(shard) : typeof shard}`,
      );
    }
    names.add(shard);
  }
  return [...names].sort();
}

/**
 * Instruct models name their end-of-turn tokens in generation_config.json (Llama 3: a list of
 * both <|end_of_text|> and <|eot_id|>); generation stops at any of them, as transformers does.
 */
async function withGenerationEos(files: ModelFiles, config: LlamaConfig): Promise<LlamaConfig> {
  const name = "generation_config.json";
  if (!(await files.exists(name))) return config;
  const { json } = await readJson(files, name);
  const v = typeof json === "object" && json !== null ? (json as { eos_token_id?: unknown }).eos_token_id : undefined;
  if (v === undefined || v === null) return config;
  const ids = Array.isArray(v) ? v : [v];
  if (!ids.every((id) => typeof id === "number" && Number.isInteger(id) && id >= 0)) {
    bad(`${files.pathOf(name)}: field "eos_token_id": expected a token id or a list of token ids`);
  }
  return { ...config, eosTokenIds: [...new Set([...config.eosTokenIds, ...(ids as number[])])] };
}

/**
 * AutoGPTQ writes its settings to quantize_config.json beside the weights; transformers reads
 * config.json's quantization_config. Older checkpoints have only the former.
 */
async function withQuantizeConfig(files: ModelFiles, config: LlamaConfig): Promise<LlamaConfig> {
  const name = "quantize_config.json";
  if (config.quantization || !(await files.exists(name))) return config;
  const { json } = await readJson(files, name);
  return { ...config, quantization: parseQuantConfig(json, files.pathOf(name), "") };
}

/** The tensor names a Llama checkpoint of this config holds. */
export function expectedTensorNames(config: LlamaConfig): Set<string> {
  const names = new Set(["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]);
  const perLayer = ["input_layernorm", "post_attention_layernorm"].map((n) => `${n}.weight`);
  perLayer.push(...["q_proj", "k_proj", "v_proj", "o_proj"].map((n) => `self_attn.${n}.weight`));
  perLayer.push(...["gate_proj", "up_proj", "down_proj"].map((n) => `mlp.${n}.weight`));
  for (let i = 0; i < config.numLayers; i++) for (const n of perLayer) names.add(`model.layers.${i}.${n}`);
  return names;
}

/**
 * A tensor the config does not account for (a layer beyond num_hidden_layers, a bias, a
 * quantization table) means the config and the weights disagree: computing without it would be a
 * silently different model, so it is an error. Old HF checkpoints store RoPE's inv_freq, which is
 * derived from the config; that one is ignored.
 */
function refuseUnexpectedTensors(config: LlamaConfig, tensors: Map<string, CheckpointTensor>): void {
  const expected = expectedTensorNames(config);
  // A GPTQ Linear holds qweight, qzeros, scales and g_idx where a float one holds weight; so does a
  // tied embedding that cats quantize quantized with its lm_head.
  if (config.quantization) {
    for (const name of [...expected]) {
      const prefix = name.slice(0, -".weight".length);
      const matrix = name.includes("_proj.") || name === "lm_head.weight" || name === "model.embed_tokens.weight";
      if (!matrix || !tensors.has(`${prefix}.qweight`)) continue;
      expected.delete(name);
      for (const part of GPTQ_PARTS) expected.add(`${prefix}.${part}`);
    }
  }
  const extra = [...tensors.keys()].filter((n) => !expected.has(n) && !n.endsWith(".rotary_emb.inv_freq"));
  if (extra.length === 0) return;
  const shownNames = extra.slice(0, 3).map(quoted).join(", ") + (extra.length > 3 ? ` and ${extra.length - 3} more` : "");
  throw new CatsError(
    `${tensors.get(extra[0])!.source.name}: tensor ${shownNames} not used by a ${config.numLayers}-layer ${config.architecture} (config.json: num_hidden_layers ${config.numLayers}); the checkpoint and its config.json disagree`,
  );
}

export async function openCheckpoint(files: ModelFiles): Promise<Checkpoint> {
  if (!(await files.exists("config.json"))) throw new CatsError(`${files.location}: no config.json (is this a model directory?)`);
  const { text: configText, json } = await readJson(files, "config.json");
  const config = await withQuantizeConfig(files, await withGenerationEos(files, parseLlamaConfig(json, files.pathOf("config.json"))));
  if (await isOnnxDirectory(files)) return openOnnxCheckpoint(files, config, configText);
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
        if (tensors.has(t.name))
          throw new CatsError(`${src.name}: tensor ${quoted(t.name)} is also in ${tensors.get(t.name)!.source.name}`);
        tensors.set(t.name, { ...t, source: src });
      }
    }
    refuseUnexpectedTensors(config, tensors);
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
