import { CatsError } from "../errors.js";
import type { LlamaEngine } from "./llama.js";
import { bosWindows } from "./windows.js";

export interface PerplexityResult {
  perplexity: number;
  meanNll: number;
  tokens: number;
  windows: number;
}

/**
 * Perplexity as reference.json defines it: the text (stripped) is one token stream without BOS,
 * cut into consecutive chunks of context-1 tokens, each fed as BOS + chunk from a fresh context;
 * stop after the first window at which `maxTokens` predicted tokens are reached.
 */
export async function perplexity(
  engine: LlamaEngine,
  streamIds: number[],
  maxTokens: number | undefined,
  onWindow?: (tokensSoFar: number) => void,
): Promise<PerplexityResult> {
  let nll = 0;
  let tokens = 0;
  let windows = 0;
  for (const window of bosWindows(streamIds, engine.config, "evaluation")) {
    if (window.length < 2) continue;
    const values = await engine.windowNll(window);
    for (const v of values) nll += v;
    tokens += values.length;
    windows += 1;
    onWindow?.(tokens);
    if (maxTokens !== undefined && tokens >= maxTokens) break;
  }
  if (tokens === 0) throw new CatsError("the evaluation text has fewer than one token to predict");
  return { perplexity: Math.exp(nll / tokens), meanNll: nll / tokens, tokens, windows };
}
