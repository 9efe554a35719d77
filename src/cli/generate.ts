import { notice } from "./notice.js";
import { printable } from "../model/describe.js";
import { sparsityMiss } from "../cats/thresholds.js";
import { openModel, type ModelFlags } from "./model-flags.js";
import { collect } from "../api/model.js";

export interface GenerateFlags extends ModelFlags {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed?: number;
  json?: boolean;
}

/** `cats generate`: the library's generate(), streamed to stdout (or one JSON object). */
export async function runGenerate(prompt: string, flags: GenerateFlags): Promise<void> {
  const t0 = performance.now();
  const model = await openModel(flags);
  const loadMs = performance.now() - t0;
  try {
    const promptIds = model.tokenizer.encode(prompt);
    const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
    const pieces = model.generate(promptIds, {
      maxTokens: flags.maxTokens,
      temperature: flags.temperature,
      topK: flags.topK,
      topP: flags.topP,
      seed,
    });
    // The prompt is echoed with the first piece, once generation has accepted it.
    let echoed = false;
    const result = await collect(pieces, (piece) => {
      if (flags.json) return;
      process.stdout.write((echoed ? "" : prompt) + printable(piece.text));
      echoed = true;
    });
    const sparsity = result.sparsity;
    if (sparsity) {
      const miss = sparsityMiss(
        { level: sparsity.level, thresholds: sparsity.thresholds, source: sparsity.source },
        sparsity.measured,
        flags.thresholds!,
      );
      if (miss) notice(miss);
    }
    if (flags.json) {
      const out = {
        model: model.location,
        prompt,
        prompt_ids: promptIds,
        ids: result.ids,
        text: result.text,
        stop_reason: result.stopReason,
        seed,
        kernels: model.gpu.flavour,
        sparsity: sparsity
          ? {
              target: sparsity.level,
              thresholds_from: sparsity.source,
              thresholds: sparsity.thresholds,
              tokens: sparsity.tokens,
              overall: sparsity.measured,
              per_layer: sparsity.perLayer,
            }
          : null,
        timings: {
          load_ms: round(loadMs),
          prefill_ms: round(result.prefillMs),
          decode_ms_per_token: result.decodeMsPerToken === null ? null : round(result.decodeMsPerToken),
          tokens_per_s: result.decodeMsPerToken === null ? null : round(1000 / result.decodeMsPerToken),
        },
      };
      process.stdout.write(JSON.stringify(out) + "\n");
    } else {
      process.stdout.write((echoed ? "" : prompt) + "\n");
      if (result.stopReason === "context") {
        notice(`stopped after ${result.ids.length} tokens: the context of ${model.contextLength} positions is full (--context)`);
      }
    }
  } finally {
    await model.dispose();
  }
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}
