import { CatsError } from "../../errors.js";
import type { Checkpoint, CheckpointTensor, ModelFiles } from "../checkpoint.js";
import type { LlamaConfig } from "../config.js";
import type { SafetensorsHeader } from "../safetensors.js";
import { buildGraph } from "./graph.js";
import { matchLlamaDecoder, type MatchedDecoder } from "./match.js";
import { decodeOnnxModel } from "./proto.js";
import { OnnxTensorStore, shapeOf, transposedSource } from "./tensors.js";

/** Where transformers.js and onnxruntime-web look (fp32, then the fp16 export), then a bare model.onnx. */
export const ONNX_MODEL_NAMES = ["onnx/model.onnx", "onnx/model_fp16.onnx", "model.onnx"];

/** An ONNX directory has a model.onnx and no safetensors weights (which win when both are there). */
export async function isOnnxDirectory(files: ModelFiles): Promise<boolean> {
  if ((await files.exists("model.safetensors")) || (await files.exists("model.safetensors.index.json"))) return false;
  for (const n of ONNX_MODEL_NAMES) if (await files.exists(n)) return true;
  return false;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The graph's dimensions must be config.json's: the engine sizes everything from the config. */
function crossCheck(file: string, configFile: string, config: LlamaConfig, found: MatchedDecoder): void {
  const dim = (name: string, axis: "out" | "in"): number => {
    const w = found.weights.get(name)!;
    const s = shapeOf(w.tensor);
    return (axis === "out") === w.inOut ? s[1] : s[0];
  };
  const [vocab, hidden] = shapeOf(found.weights.get("model.embed_tokens.weight")!.tensor);
  const checks: [string, number, number][] = [
    ["hidden_size", config.hiddenSize, hidden],
    ["vocab_size", config.vocabSize, vocab],
    ["num_hidden_layers", config.numLayers, found.numLayers],
  ];
  if (found.numLayers > 0) {
    const l = "model.layers.0.";
    checks.push(
      ["num_attention_heads * head_dim", config.numHeads * config.headDim, dim(`${l}self_attn.q_proj.weight`, "out")],
      ["num_key_value_heads * head_dim", config.numKvHeads * config.headDim, dim(`${l}self_attn.k_proj.weight`, "out")],
      ["intermediate_size", config.intermediateSize, dim(`${l}mlp.gate_proj.weight`, "out")],
    );
  }
  for (const [field, want, got] of checks) {
    if (want !== got)
      throw new CatsError(`${file}: the graph has ${field} ${got}, but ${configFile} says ${want}; the model and its config.json disagree`);
  }
  for (const [name, w] of found.weights) {
    const s = shapeOf(w.tensor);
    const expectedIn = name.endsWith("o_proj.weight")
      ? config.numHeads * config.headDim
      : name.endsWith("down_proj.weight")
        ? config.intermediateSize
        : hidden;
    if (s.length === 2 && (w.inOut ? s[0] : s[1]) !== expectedIn) {
      throw new CatsError(
        `${file}: the weight found for ${name} is [${s.join(", ")}] (${w.inOut ? "in, out" : "out, in"}), which does not fit ${configFile}`,
      );
    }
  }
}

/**
 * Opens an ONNX decoder as a Checkpoint: weights located by graph structure, returned under HF names
 * in HF orientation ([out, in]), so the engine loads them like any safetensors checkpoint.
 */
export async function openOnnxCheckpoint(files: ModelFiles, config: LlamaConfig, configText: string): Promise<Checkpoint> {
  let modelName = ONNX_MODEL_NAMES[0];
  for (const n of ONNX_MODEL_NAMES) {
    if (await files.exists(n)) {
      modelName = n;
      break;
    }
  }
  const file = files.pathOf(modelName);
  const modelSrc = await files.openBinary(modelName);
  let bytes: Uint8Array;
  try {
    bytes = await modelSrc.read(0, modelSrc.size);
  } finally {
    await modelSrc.close();
  }
  const model = decodeOnnxModel(bytes, file);
  const graph = buildGraph(model, file);
  const found = matchLlamaDecoder(graph);
  crossCheck(file, files.pathOf("config.json"), config, found);
  const store = await OnnxTensorStore.open(files, modelName, model.graph!.initializer ?? []);
  try {
    const eps = await Promise.all(found.eps.map(async (t) => (await store.values(t)) ?? []));
    for (const v of eps.flat()) {
      if (Math.abs(v - config.rmsNormEps) > 1e-3 * config.rmsNormEps) {
        throw new CatsError(`${file}: an RMSNorm adds eps ${v}, but ${files.pathOf("config.json")} says rms_norm_eps ${config.rmsNormEps}`);
      }
    }
    const tensors = new Map<string, CheckpointTensor>();
    for (const [name, w] of found.weights) {
      const raw = store.bytes(w.tensor, name);
      const t = w.inOut ? transposedSource(raw) : raw;
      tensors.set(name, { name, dtype: t.dtype, shape: t.shape, begin: t.begin, end: t.end, source: t.source });
    }
    let ckptConfig = config;
    if (!found.tiedInGraph && config.tieWordEmbeddings) {
      // The graph's lm_head is its own initializer: unless it is the embedding's copy, it is what the model computes with.
      const [a, b] = await Promise.all(
        ["model.embed_tokens.weight", "lm_head.weight"].map((n) => tensors.get(n)!).map((t) => t.source.read(t.begin, t.end - t.begin)),
      );
      if (a.byteLength === b.byteLength && a.every((x, i) => x === b[i])) tensors.delete("lm_head.weight");
      else ckptConfig = { ...config, tieWordEmbeddings: false };
    } else if (found.tiedInGraph) {
      tensors.delete("lm_head.weight");
      ckptConfig = { ...config, tieWordEmbeddings: true };
    }
    // The fingerprint of a safetensors model hashes its headers; an ONNX model's identity is its graph file (small: weights beside it are hashed by size and ends).
    const identity = [`onnx ${modelName} ${bytes.byteLength} sha256:${await sha256(bytes)}`];
    for (const src of store.sources) {
      const mb = 1 << 20;
      const head = await src.read(0, Math.min(mb, src.size));
      const tail = await src.read(Math.max(0, src.size - mb), Math.min(mb, src.size));
      identity.push(`${src.name.slice(src.name.lastIndexOf("/") + 1)} ${src.size} sha256:${await sha256(head)} ${await sha256(tail)}`);
    }
    const header: SafetensorsHeader = {
      file,
      headerBytes: bytes.byteLength,
      headerText: identity.join("\n"),
      tensors: new Map(),
      metadata: {},
    };
    return {
      files,
      config: ckptConfig,
      configText,
      headers: [header],
      tensors,
      async read(name) {
        const t = tensors.get(name);
        if (!t) throw new CatsError(`${files.location}: tensor "${name}" not found in the checkpoint`);
        return t.source.read(t.begin, t.end - t.begin);
      },
      close: () => store.close(),
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}
