import { notice } from "./notice.js";
import { printable } from "../model/describe.js";
import { generate, TextStream } from "../engine/generate.js";
import { loadModel } from "../node.js";
import { applySparsity, measuredSparsity, wantsSparsity, type SparsityFlags } from "./sparsity.js";

export interface GenerateFlags extends SparsityFlags {
  context?: number;
  checkWeights?: boolean;
  model?: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed?: number;
  json?: boolean;
  kernels?: string;
  variant?: string;
}

export async function runGenerate(prompt: string, flags: GenerateFlags): Promise<void> {
  wantsSparsity(flags);
  const lm = await loadModel(flags.model, {
    flavour: flags.kernels,
    context: flags.context,
    checkWeights: flags.checkWeights,
    variants: flags.variant,
    notice,
  });
  try {
    const level = await applySparsity(lm, flags);
    const promptIds = lm.tokenizer.encode(prompt);
    const stream = new TextStream((ids) => lm.tokenizer.decode(ids), promptIds);
    // The prompt is echoed with the first token, after generate() has accepted it.
    let echoed = false;
    const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
    const result = await generate(lm.engine, promptIds, {
      maxTokens: flags.maxTokens,
      temperature: flags.temperature,
      topK: flags.topK,
      topP: flags.topP,
      seed,
      onToken: (id) => {
        const delta = stream.push(id);
        if (flags.json) return;
        process.stdout.write(echoed ? printable(delta) : prompt + printable(delta));
        echoed = true;
      },
    });
    const sparsity = level ? await measuredSparsity(lm, level, flags.thresholds!) : null;
    const decodeSteps = result.ids.length - 1;
    const msPerToken = decodeSteps > 0 ? result.decodeMs / decodeSteps : null;
    if (flags.json) {
      const out = {
        model: lm.dir,
        prompt,
        prompt_ids: promptIds,
        ids: result.ids,
        text: stream.text(),
        stop_reason: result.stopReason,
        seed,
        kernels: lm.gpu.flavour,
        sparsity,
        timings: {
          load_ms: round(lm.loadMs),
          prefill_ms: round(result.prefillMs),
          decode_ms_per_token: msPerToken === null ? null : round(msPerToken),
          tokens_per_s: msPerToken === null ? null : round(1000 / msPerToken),
        },
      };
      process.stdout.write(JSON.stringify(out) + "\n");
    } else {
      process.stdout.write(printable(stream.flush()) + "\n");
      if (result.stopReason === "context") {
        notice(`stopped after ${result.ids.length} tokens: the context of ${lm.engine.contextLength} positions is full (--context)`);
      }
    }
  } finally {
    await lm.close();
  }
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}
