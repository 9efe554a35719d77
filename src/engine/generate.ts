import { CatsError } from "../errors.js";
import type { LlamaEngine } from "./llama.js";
import { isGreedy, sampleToken, seededRandom, type SamplingOptions } from "./sampling.js";

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  /** Called with every new id as soon as it is known (streaming). */
  onToken?: (id: number) => void;
}

export type StopReason = "eos" | "max_tokens" | "context";

export interface GenerateResult {
  ids: number[];
  stopReason: StopReason;
  prefillMs: number;
  /** Time of the decode steps after the first new token (which prefill produces). */
  decodeMs: number;
}

/**
 * Prefill the prompt in one batched pass, then decode token by token. Greedy decoding never reads
 * logits back: the GPU picks the token and only its id returns.
 */
export async function generate(engine: LlamaEngine, promptIds: number[], o: GenerateOptions): Promise<GenerateResult> {
  const ctx = engine.contextLength;
  if (promptIds.length >= ctx) {
    throw new CatsError(
      `prompt is ${promptIds.length} tokens but the model's context is ${ctx} (max_position_embeddings); nothing can be generated`,
    );
  }
  const eos = new Set(engine.config.eosTokenIds);
  const greedy = isGreedy(o);
  const random = seededRandom(o.seed);
  engine.reset();
  const ids: number[] = [];
  const t0 = performance.now();
  const first = await engine.prefill(promptIds, !greedy);
  const prefillMs = performance.now() - t0;
  let token = greedy ? first.token : sampleToken(first.logits!, o, random);
  let stopReason: StopReason = "max_tokens";
  const t1 = performance.now();
  for (;;) {
    ids.push(token);
    o.onToken?.(token);
    if (eos.has(token)) {
      stopReason = "eos";
      break;
    }
    if (ids.length >= o.maxTokens) break;
    if (engine.position >= ctx) {
      stopReason = "context";
      break;
    }
    if (greedy) {
      token = (await engine.decode(false)).token;
    } else {
      engine.setNextToken(token);
      token = sampleToken((await engine.decode(true)).logits!, o, random);
    }
  }
  return { ids, stopReason, prefillMs, decodeMs: performance.now() - t1 };
}

/**
 * Turns a growing id list into text deltas. New ids are decoded after the prompt's ids, because
 * SentencePiece decoders drop the leading space of a sequence's first token; a trailing partial
 * UTF-8 character is held back until it is complete.
 */
export class TextStream {
  private readonly ids: number[];
  private readonly prefixText: string;
  private shown = "";

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly prefix: readonly number[] = [],
  ) {
    this.ids = [...prefix];
    this.prefixText = decode(this.ids);
  }

  /** The text of the new ids alone, as it reads after the prefix. */
  text(): string {
    const full = this.decode(this.ids);
    return full.startsWith(this.prefixText) ? full.slice(this.prefixText.length) : this.decode(this.ids.slice(this.prefix.length));
  }

  push(id: number): string {
    this.ids.push(id);
    const text = this.text();
    if (text.endsWith("\uFFFD") || !text.startsWith(this.shown)) return "";
    const delta = text.slice(this.shown.length);
    this.shown = text;
    return delta;
  }

  flush(): string {
    const text = this.text();
    const delta = text.startsWith(this.shown) ? text.slice(this.shown.length) : "";
    this.shown = text;
    return delta;
  }
}
