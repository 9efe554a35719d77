import { CatsError } from "../errors.js";
import type { LlamaEngine } from "./llama.js";
import { isGreedy, sampleToken, seededRandom, type SamplingOptions } from "./sampling.js";

export interface GenerateOptions extends GenerateIdsOptions {
  /** Called with every new id as soon as it is known (streaming). */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  ids: number[];
  stopReason: StopReason;
  prefillMs: number;
  /** Time of the decode steps after the first new token (which prefill produces). */
  decodeMs: number;
  /** Prompt tokens that were prefilled (the rest came from the KV cache). */
  prefilled: number;
}

/** Greedy steps chained per submission: the first chunk is a single step so the first token is not delayed. */
export function chunkSizes(maxChain: number): () => number {
  let next = 1;
  return () => {
    const n = next;
    next = Math.min(next * 2, maxChain);
    return n;
  };
}

export interface GenerateIdsOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  /**
   * Positions of the KV cache to keep from the previous sequence (their ids equal the prompt's
   * first `keep` ids): only the rest of the prompt is prefilled. 0 starts from an empty cache.
   */
  keep?: number;
  /** Checked between submissions: generation ends with stop reason "aborted". */
  signal?: AbortSignal;
}

export type StopReason = "eos" | "max_tokens" | "context" | "aborted";

/**
 * Prefill the prompt in one batched pass, then decode, yielding the new ids as each submission
 * returns. Greedy decoding chains several steps per submission (1, 2, 4, ... up to 32) and never
 * reads logits back: the GPU picks each token and only the ids return. A chunk that passes an EOS
 * is cut there (the steps computed past it are dropped). Sampling reads the logits of every step.
 * On return the engine's position is prompt + ids - 1: the KV cache holds every id but the last.
 */
export async function* generateIds(
  engine: LlamaEngine,
  promptIds: number[],
  o: GenerateIdsOptions,
): AsyncGenerator<number[], GenerateResult> {
  const ctx = engine.contextLength;
  if (promptIds.length >= ctx) {
    throw new CatsError(`prompt is ${promptIds.length} tokens but the model's context is ${ctx} (--context); nothing can be generated`);
  }
  if (o.signal?.aborted) return { ids: [], stopReason: "aborted", prefillMs: 0, decodeMs: 0, prefilled: 0 };
  const keep = Math.max(0, Math.min(o.keep ?? 0, promptIds.length - 1, engine.position));
  const eos = new Set(engine.config.eosTokenIds);
  const greedy = isGreedy(o);
  const random = seededRandom(o.seed);
  if (keep > 0) engine.truncate(keep);
  else engine.reset();
  const ids: number[] = [];
  const t0 = performance.now();
  const first = await engine.prefill(promptIds.slice(keep), !greedy);
  const prefillMs = performance.now() - t0;
  const t1 = performance.now();
  const done = (stopReason: StopReason): GenerateResult => ({
    ids,
    stopReason,
    prefillMs,
    decodeMs: performance.now() - t1,
    prefilled: promptIds.length - keep,
  });
  const nextChunk = chunkSizes(Math.min(MAX_CHUNK, engine.maxChain));
  let pending = [greedy ? first.token : sampleToken(first.logits!, o, random)];
  for (;;) {
    const accepted: number[] = [];
    let stop: StopReason | null = null;
    for (const token of pending) {
      ids.push(token);
      accepted.push(token);
      if (eos.has(token)) {
        engine.truncate(promptIds.length + ids.length - 1);
        stop = "eos";
        break;
      }
      if (ids.length >= o.maxTokens) {
        stop = "max_tokens";
        break;
      }
    }
    yield accepted;
    if (stop) return done(stop);
    if (o.signal?.aborted) return done("aborted");
    const room = ctx - engine.position;
    if (room <= 0) return done("context");
    if (greedy) {
      pending = await engine.decodeGreedy(Math.min(nextChunk(), o.maxTokens - ids.length, room));
    } else {
      engine.setNextToken(pending[0]);
      pending = [sampleToken((await engine.decode(true)).logits!, o, random)];
    }
  }
}

/** generateIds with a callback per id: the CLI's streaming and the tests. */
export async function generate(engine: LlamaEngine, promptIds: number[], o: GenerateOptions): Promise<GenerateResult> {
  const it = generateIds(engine, promptIds, o);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    for (const id of r.value) o.onToken?.(id);
  }
}

/** Most greedy steps in one submission while generating: long enough to amortise a submission, short enough to stream. */
const MAX_CHUNK = 32;

/**
 * Turns a growing id list into text deltas, decoding only a few ids per new one (the scheme of
 * text-generation-inference's decode_token): the ids from `prefixOffset` are decoded with and
 * without the new ones, and the difference is the new text. Decoding after earlier ids keeps the
 * leading space that SentencePiece decoders drop at the start of a sequence; a trailing partial
 * UTF-8 character is held back until it is complete.
 */
export class TextStream {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly prefix: readonly number[] = [],
  ) {
    this.ids = [...prefix];
    this.readOffset = prefix.length;
    this.prefixOffset = Math.max(0, prefix.length - 4);
  }

  /** The text of the new ids alone, as it reads after the prefix. */
  text(): string {
    const prefixText = this.decode([...this.prefix]);
    const full = this.decode(this.ids);
    return full.startsWith(prefixText) ? full.slice(prefixText.length) : this.decode(this.ids.slice(this.prefix.length));
  }

  push(id: number): string {
    this.ids.push(id);
    return this.take(false);
  }

  /** Whatever is held back (an incomplete character at the end of the sequence). */
  flush(): string {
    return this.take(true);
  }

  private take(final: boolean): string {
    const before = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const after = this.decode(this.ids.slice(this.prefixOffset));
    if (after.length <= before.length || !after.startsWith(before) || (!final && after.endsWith("\uFFFD"))) return "";
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return after.slice(before.length);
  }
}
