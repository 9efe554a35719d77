import { CatsError } from "../errors.js";
import { shown } from "./describe.js";
import { parseQuantConfig, type QuantConfig } from "./quant-config.js";

/** The subset of a HF Llama/Mistral config.json that the engine implements. */
export interface LlamaConfig {
  architecture: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositions: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** True for checkpoints written by `cats synth`: they measure speed, never quality. */
  synthetic: boolean;
  /** The projections' quantization (GPTQ layout), or null for float weights. */
  quantization: QuantConfig | null;
}

const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM"];

type Json = Record<string, unknown>;

function fail(file: string, field: string, expected: string, got: unknown): never {
  throw new CatsError(`${file}: field "${field}": expected ${expected}, got ${shown(got)}`);
}

/**
 * Bounds far above any real model, so that a config claiming 2^53 layers is refused here instead of
 * sizing loops and buffers (max_position_embeddings is bounded by the context cap instead).
 */
const LIMITS: Record<string, number> = {
  hidden_size: 1 << 20,
  intermediate_size: 1 << 22,
  num_hidden_layers: 4096,
  num_attention_heads: 1 << 14,
  num_key_value_heads: 1 << 14,
  head_dim: 1 << 14,
  vocab_size: 1 << 24,
};

function positiveInt(cfg: Json, file: string, field: string, fallback?: number): number {
  const v = cfg[field] ?? fallback;
  const max = LIMITS[field] ?? Infinity;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > max)
    fail(file, field, max === Infinity ? "a positive integer" : `a positive integer up to ${max}`, cfg[field]);
  return v;
}

function positiveNumber(cfg: Json, file: string, field: string, fallback: number): number {
  const v = cfg[field] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) fail(file, field, "a positive number", cfg[field]);
  return v;
}

function tokenIds(cfg: Json, file: string, field: string): number[] {
  const v = cfg[field];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) fail(file, field, "a token id or a list of token ids", v);
  }
  return list as number[];
}

/** Refuses, rather than ignores, every option that would change the maths the engine implements. */
function refuseUnsupported(cfg: Json, file: string): void {
  const act = cfg.hidden_act ?? cfg.hidden_activation ?? "silu";
  if (act !== "silu") fail(file, "hidden_act", '"silu" (SwiGLU MLP)', act);
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) {
    fail(file, "rope_scaling", "null (rope scaling is not implemented)", cfg.rope_scaling);
  }
  for (const field of ["attention_bias", "mlp_bias"]) {
    if (cfg[field] !== undefined && cfg[field] !== false) fail(file, field, "false (biases are not implemented)", cfg[field]);
  }
  if (cfg.sliding_window !== undefined && cfg.sliding_window !== null) {
    const maxPos = cfg.max_position_embeddings;
    if (typeof maxPos !== "number" || typeof cfg.sliding_window !== "number" || cfg.sliding_window < maxPos) {
      fail(file, "sliding_window", "null or >= max_position_embeddings (sliding-window attention is not implemented)", cfg.sliding_window);
    }
  }
  if (cfg.pretraining_tp !== undefined && cfg.pretraining_tp !== 1) fail(file, "pretraining_tp", "1", cfg.pretraining_tp);
}

/** Parses and validates a config.json object; `file` names it in errors. */
export function parseLlamaConfig(raw: unknown, file: string): LlamaConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CatsError(`${file}: expected a JSON object`);
  }
  const cfg = raw as Json;
  const archs = cfg.architectures;
  const arch = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : undefined;
  if (!arch || !SUPPORTED_ARCHITECTURES.includes(arch)) {
    fail(file, "architectures", `one of ${SUPPORTED_ARCHITECTURES.join(", ")}`, archs);
  }
  refuseUnsupported(cfg, file);
  const hiddenSize = positiveInt(cfg, file, "hidden_size");
  const numHeads = positiveInt(cfg, file, "num_attention_heads");
  const numKvHeads = positiveInt(cfg, file, "num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    fail(file, "num_key_value_heads", `a divisor of num_attention_heads (${numHeads})`, numKvHeads);
  }
  const headDim = cfg.head_dim === undefined || cfg.head_dim === null ? hiddenSize / numHeads : positiveInt(cfg, file, "head_dim");
  // The attention kernel works in vec4s and keeps a head in registers.
  if (!Number.isInteger(headDim) || headDim % 4 !== 0 || headDim > 256) {
    fail(file, "head_dim", "a multiple of 4 up to 256", headDim);
  }
  const tie = cfg.tie_word_embeddings ?? false;
  if (typeof tie !== "boolean") fail(file, "tie_word_embeddings", "a boolean", tie);
  const bos = tokenIds(cfg, file, "bos_token_id");
  return {
    architecture: arch,
    hiddenSize,
    intermediateSize: positiveInt(cfg, file, "intermediate_size"),
    numLayers: positiveInt(cfg, file, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber(cfg, file, "rms_norm_eps", 1e-6),
    ropeTheta: positiveNumber(cfg, file, "rope_theta", 10000),
    maxPositions: positiveInt(cfg, file, "max_position_embeddings"),
    vocabSize: positiveInt(cfg, file, "vocab_size"),
    tieWordEmbeddings: tie,
    bosTokenId: bos.length > 0 ? bos[0] : null,
    eosTokenIds: tokenIds(cfg, file, "eos_token_id"),
    synthetic: cfg.cats_synthetic === true,
    quantization:
      cfg.quantization_config === undefined || cfg.quantization_config === null
        ? null
        : parseQuantConfig(cfg.quantization_config, file, "quantization_config"),
  };
}
