import { chatTemplateFrom, renderChat, specialTokenText, type ChatMessage } from "../chat/template.js";
import { thresholdsForLevel, type LayerThresholds, type ThresholdsFile } from "../cats/thresholds.js";
import { generateIds, TextStream, type StopReason } from "../engine/generate.js";
import { perplexity, type PerplexityResult } from "../engine/evaluate.js";
import type { LlamaEngine, SparsityStats } from "../engine/llama.js";
import { CatsError } from "../errors.js";
import type { GpuContext } from "../gpu/device.js";
import type { ModelFiles } from "../model/checkpoint.js";
import type { LlamaConfig } from "../model/config.js";
import { parseJson } from "../model/json.js";
import type { TextTokenizer } from "../tokenizer/tokenizer.js";

export type { ChatMessage };

/** Options of one generation; every field has a default. */
export interface GenerateOptions {
  /** Most new tokens (default 256). */
  maxTokens?: number;
  /** 0 (the default) is greedy. */
  temperature?: number;
  /** 0 (the default) keeps every token. */
  topK?: number;
  /** 1 (the default) keeps the whole distribution. */
  topP?: number;
  /** Seed of the sampler (default: random). */
  seed?: number;
  /** Generation ends before the first of these strings; the text never contains it. */
  stop?: string[];
  /** Aborting ends the generation after the current submission, with stop reason "aborted". */
  signal?: AbortSignal;
  /** CATS sparsity level for this generation (default: the level given at load; 0 = dense). Needs thresholds. */
  sparsity?: number;
  /** Called when this generation gets the engine (calls queue behind each other): the server's energy bracket. */
  onStart?: () => void;
}

export interface ChatOptions extends GenerateOptions {
  /** Keep the KV cache of the previous chat turn and prefill only what is new (cats chat); default false. */
  reuseCache?: boolean;
  /** A named chat template of tokenizer_config.json's list (default: "default"). */
  template?: string;
}

export interface EvalOptions {
  /** Stop after the window at which this many tokens were predicted. */
  maxTokens?: number;
  sparsity?: number;
  /** Called after each window with the tokens predicted so far and the total. */
  onProgress?: (tokens: number, total: number) => void;
}

/** A piece of streamed text and the ids it came from. */
export interface GeneratedPiece {
  text: string;
  ids: number[];
}

export interface GenerationResult {
  text: string;
  /** Every new id, including an EOS that ended the generation. */
  ids: number[];
  stopReason: StopReason | "stop";
  promptTokens: number;
  /** Prompt tokens that were run through the model (the others came from the KV cache). */
  prefilledTokens: number;
  prefillMs: number;
  /** Per decode step after the first token (null for a single token). */
  decodeMsPerToken: number | null;
  /** What CATS did, when the generation ran sparse. */
  sparsity: {
    level: number;
    /** exact: a calibrated level; sketch: interpolated from the file's quantile sketch. */
    source: "exact" | "sketch" | "dense";
    thresholds: number[];
    /** Tokens counted (prompt and generated). */
    tokens: number;
    /** Share of MLP activations zeroed, overall and per layer. */
    measured: number;
    perLayer: number[];
  } | null;
}

/** What a loader hands to CatsModel: an engine on a device, and what it was made from. */
export interface ModelParts {
  name: string;
  files: ModelFiles;
  config: LlamaConfig;
  engine: LlamaEngine;
  tokenizer: TextTokenizer;
  gpu: GpuContext;
  thresholds: { file: ThresholdsFile; name: string } | null;
  /** The level generations run at unless they say otherwise (0 = dense). */
  sparsity: number;
  close: () => Promise<void>;
}

/**
 * A loaded model: text in, text out. One GPU engine underneath, so calls run one at a time in the
 * order they were made (a generation holds the engine until it ends or its iterator is closed).
 */
export class CatsModel {
  readonly name: string;
  /** Where the model was loaded from (a directory or URL). */
  readonly location: string;
  readonly config: LlamaConfig;
  /** The engine itself, for benchmarks and tools that drive passes directly. */
  readonly engine: LlamaEngine;
  readonly tokenizer: TextTokenizer;
  readonly gpu: GpuContext;
  private readonly parts: ModelParts;
  private queue: Promise<void> = Promise.resolve();
  /** Ids whose keys and values the KV cache holds, in order (for chat turns that reuse them). */
  private cached: number[] = [];
  private tokenizerConfig: Record<string, unknown> | null = null;
  private disposed = false;

  constructor(parts: ModelParts) {
    this.parts = parts;
    this.name = parts.name;
    this.location = parts.files.location;
    this.config = parts.config;
    this.engine = parts.engine;
    this.tokenizer = parts.tokenizer;
    this.gpu = parts.gpu;
  }

  /** Positions of the KV cache: the longest prompt plus generation. */
  get contextLength(): number {
    return this.engine.contextLength;
  }

  /** Sparsity levels this model can run: 0, and any level in (0, 1) when thresholds were loaded. */
  get hasThresholds(): boolean {
    return this.parts.thresholds !== null;
  }

  /** The thresholds file given at load, validated for this model. */
  get thresholdsFile(): ThresholdsFile | null {
    return this.parts.thresholds?.file ?? null;
  }

  /** Streams the continuation of `prompt` (text, encoded with BOS as the tokenizer config says, or ids). */
  generate(prompt: string | number[], options: GenerateOptions = {}): AsyncGenerator<GeneratedPiece, GenerationResult> {
    const ids = typeof prompt === "string" ? this.tokenizer.encode(prompt) : [...prompt];
    return this.run(ids, options, false);
  }

  /** Renders `messages` with the model's chat template (generation prompt added) and streams the reply. */
  async *chat(messages: ChatMessage[], options: ChatOptions = {}): AsyncGenerator<GeneratedPiece, GenerationResult> {
    const text = await this.renderChat(messages, true, options.template);
    // The template writes BOS and the other special tokens as text; transformers then tokenizes
    // without adding special tokens again.
    const ids = this.tokenizer.encode(text, false);
    return yield* this.run(ids, options, options.reuseCache ?? false);
  }

  /** The chat template's rendering of `messages`, as transformers' apply_chat_template(tokenize=False). */
  async renderChat(messages: ChatMessage[], addGenerationPrompt: boolean, templateName?: string): Promise<string> {
    const config = await this.loadTokenizerConfig();
    const file = this.parts.files.pathOf("tokenizer_config.json");
    const template = chatTemplateFrom(config, file, templateName);
    if (template === null) throw new CatsError(`${file}: no chat_template: ${this.name} is not a chat model (use generate)`);
    const special: Record<string, string | null> = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) special[key] = specialTokenText(config[key]);
    return renderChat(template, messages, {
      addGenerationPrompt,
      bosToken: special.bos_token,
      eosToken: special.eos_token,
      specialTokens: special,
      origin: `${file}: field "chat_template"`,
    });
  }

  /** Perplexity of `text` in reference.json's windows (BOS + context - 1 tokens each). */
  async eval(text: string, options: EvalOptions = {}): Promise<PerplexityResult & { sparsity: GenerationResult["sparsity"] }> {
    return this.exclusive(async () => {
      const armed = this.arm(options.sparsity);
      if (armed) await this.engine.takeSparsityStats();
      this.cached = [];
      const ids = this.tokenizer.encode(text.trim(), false);
      const total = Math.min(ids.length, options.maxTokens ?? ids.length);
      options.onProgress?.(0, total);
      const r = await perplexity(this.engine, ids, options.maxTokens, (n) => options.onProgress?.(Math.min(n, total), total));
      return { ...r, sparsity: armed ? outcome(armed, await this.engine.takeSparsityStats()) : null };
    });
  }

  /** Frees the GPU device and closes the checkpoint; the model cannot be used afterwards. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue.catch(() => {});
    await this.parts.close();
  }

  private async loadTokenizerConfig(): Promise<Record<string, unknown>> {
    if (this.tokenizerConfig) return this.tokenizerConfig;
    const files = this.parts.files;
    const name = "tokenizer_config.json";
    if (!(await files.exists(name))) throw new CatsError(`${files.pathOf(name)}: missing: ${this.name} has no chat template`);
    const json = parseJson(await files.readText(name), (where) => {
      throw new CatsError(`${files.pathOf(name)}: not valid JSON${where}`);
    });
    if (typeof json !== "object" || json === null || Array.isArray(json))
      throw new CatsError(`${files.pathOf(name)}: expected a JSON object`);
    this.tokenizerConfig = json as Record<string, unknown>;
    return this.tokenizerConfig;
  }

  /** Runs `work` when every earlier call has finished. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new CatsError("the model was disposed"));
    const result = this.queue.then(work);
    this.queue = result.then(
      () => {},
      () => {},
    );
    return result;
  }

  /** Waits for the engine; returns the function that hands it on. */
  private acquire(): Promise<() => void> {
    if (this.disposed) return Promise.reject(new CatsError("the model was disposed"));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const ready = this.queue.then(() => release);
    this.queue = held;
    return ready;
  }

  /** Arms the engine for a level (the load-time level when undefined). */
  private arm(level: number | undefined): LayerThresholds | null {
    const k = level ?? this.parts.sparsity;
    if (!Number.isFinite(k) || k < 0 || k >= 1) throw new CatsError(`sparsity: expected a level in [0, 1), got ${k}`);
    const t = this.parts.thresholds;
    if (k > 0 && !t) throw new CatsError(`sparsity ${k} needs thresholds (load the model with a thresholds file from cats calibrate)`);
    // A thresholds file given at load arms the sparse kernels even at 0, as the CLI's --sparsity 0 does.
    const armed = t ? thresholdsForLevel(t.file, k, t.name) : null;
    this.engine.setThresholds(armed ? armed.thresholds : null);
    return armed;
  }

  private async *run(promptIds: number[], o: GenerateOptions, reuse: boolean): AsyncGenerator<GeneratedPiece, GenerationResult> {
    const maxTokens = o.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new CatsError(`maxTokens: expected a positive integer, got ${maxTokens}`);
    const release = await this.acquire();
    try {
      const armed = this.arm(o.sparsity);
      o.onStart?.();
      if (armed) await this.engine.takeSparsityStats();
      if (promptIds.length >= this.engine.contextLength) {
        throw new CatsError(`prompt is ${promptIds.length} tokens but the model's context is ${this.engine.contextLength}`);
      }
      const keep = reuse ? commonPrefix(this.cached, promptIds) : 0;
      this.cached = [];
      const stream = new TextStream((ids) => this.tokenizer.decode(ids), promptIds);
      const stops = (o.stop ?? []).filter((s) => s.length > 0);
      const ids: number[] = [];
      let text = "";
      let emitted = 0;
      let stopped = false;
      const it = generateIds(this.engine, promptIds, {
        maxTokens,
        temperature: o.temperature ?? 0,
        topK: o.topK ?? 0,
        topP: o.topP ?? 1,
        seed: o.seed ?? Math.floor(Math.random() * 2 ** 32),
        keep,
        signal: o.signal,
      });
      let result;
      for (;;) {
        const r = await it.next();
        if (r.done) {
          result = r.value;
          break;
        }
        ids.push(...r.value);
        for (const id of r.value) text += stream.push(id);
        const cut = firstStop(text, stops);
        // Hold back a tail that could still become a stop string.
        const safe = cut ?? Math.max(emitted, text.length - longestPartialStop(text, stops));
        if (safe > emitted) {
          yield { text: text.slice(emitted, safe), ids: r.value };
          emitted = safe;
        }
        if (cut !== null) {
          text = text.slice(0, cut);
          stopped = true;
          await it.return(undefined as never);
          break;
        }
      }
      if (!stopped) {
        text += stream.flush();
        if (text.length > emitted) yield { text: text.slice(emitted), ids: [] };
      }
      // Every id but the last has its keys and values in the cache (see generateIds).
      if (ids.length > 0) this.cached = [...promptIds, ...ids].slice(0, this.engine.position);
      const sparsity = armed ? outcome(armed, await this.engine.takeSparsityStats()) : null;
      const steps = ids.length - 1;
      return {
        text,
        ids,
        stopReason: stopped ? "stop" : result!.stopReason,
        promptTokens: promptIds.length,
        prefilledTokens: result ? result.prefilled : promptIds.length - Math.min(keep, promptIds.length - 1),
        prefillMs: result?.prefillMs ?? 0,
        decodeMsPerToken: result && steps > 0 ? result.decodeMs / steps : null,
        sparsity,
      };
    } finally {
      release();
    }
  }
}

/** What CATS did during a call: the level armed and the share of activations it zeroed. */
function outcome(armed: LayerThresholds, stats: SparsityStats): NonNullable<GenerationResult["sparsity"]> {
  return {
    level: armed.level,
    source: armed.source,
    thresholds: armed.thresholds,
    tokens: stats.tokens,
    measured: stats.overall,
    perLayer: stats.perLayer,
  };
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** Where the first stop string starts in `text`, or null. */
function firstStop(text: string, stops: string[]): number | null {
  let best: number | null = null;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (best === null || at < best)) best = at;
  }
  return best;
}

/** Length of the longest end of `text` that is the start of a stop string. */
function longestPartialStop(text: string, stops: string[]): number {
  let best = 0;
  for (const s of stops)
    for (let n = Math.min(s.length - 1, text.length); n > best; n--) if (s.startsWith(text.slice(text.length - n))) best = n;
  return best;
}

/** Runs a generation to its end, handing each piece to `onPiece`; returns the result. */
export async function collect(
  pieces: AsyncGenerator<GeneratedPiece, GenerationResult>,
  onPiece?: (piece: GeneratedPiece) => void,
): Promise<GenerationResult> {
  for (;;) {
    const r = await pieces.next();
    if (r.done) return r.value;
    onPiece?.(r.value);
  }
}
