import { CatsError } from "../errors.js";
import type { LlamaConfig } from "../model/config.js";

/**
 * The windows of reference.json's evaluation protocol, which calibration shares: the token stream
 * (encoded without BOS) cut into consecutive chunks of context - 1 tokens, each run as BOS + chunk
 * from an empty cache.
 */
export function* bosWindows(streamIds: readonly number[], config: LlamaConfig, what: string): Generator<number[]> {
  const bos = config.bosTokenId;
  if (bos === null) throw new CatsError(`config.json has no bos_token_id, which ${what} windows start with`);
  const width = config.maxPositions - 1;
  for (let s = 0; s < streamIds.length; s += width) yield [bos, ...streamIds.slice(s, s + width)];
}
