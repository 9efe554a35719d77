import { createInterface } from "node:readline";
import { collect, type ChatMessage } from "../api/model.js";
import { printable } from "../model/describe.js";
import { openModel, type ModelFlags } from "./model-flags.js";
import { notice } from "./notice.js";

export interface ChatFlags extends ModelFlags {
  system?: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed?: number;
}

/**
 * `cats chat`: a terminal chat with history. Each turn renders the whole conversation with the
 * model's chat template, but the KV cache keeps the earlier turns, so only the new turn is
 * prefilled. /reset starts over, /exit (or end of input) leaves, Ctrl-C stops the current reply.
 */
export async function runChat(flags: ChatFlags): Promise<void> {
  const model = await openModel(flags);
  const start = (): ChatMessage[] => (flags.system ? [{ role: "system", content: flags.system }] : []);
  let messages = start();
  // Fails now, not at the first turn, when the model has no chat template.
  await model.renderChat([...messages, { role: "user", content: "" }], true);
  const tty = process.stdin.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: tty ? "> " : "" });
  let reply: AbortController | null = null;
  rl.on("SIGINT", () => {
    if (reply) reply.abort();
    else rl.close();
  });
  notice(`chatting with ${model.name}; /reset starts over, /exit leaves${tty ? ", Ctrl-C stops a reply" : ""}`);
  rl.prompt();
  try {
    for await (const line of rl) {
      const text = line.trim();
      if (text === "/exit") break;
      if (text === "/reset") {
        messages = start();
        notice("conversation reset");
        rl.prompt();
        continue;
      }
      if (text === "") {
        rl.prompt();
        continue;
      }
      messages.push({ role: "user", content: text });
      reply = new AbortController();
      const pieces = model.chat(messages, {
        reuseCache: true,
        maxTokens: flags.maxTokens,
        temperature: flags.temperature,
        topK: flags.topK,
        topP: flags.topP,
        seed: flags.seed,
        signal: reply.signal,
      });
      const result = await collect(pieces, (piece) => process.stdout.write(printable(piece.text)));
      reply = null;
      process.stdout.write("\n");
      messages.push({ role: "assistant", content: result.text });
      const speed = result.decodeMsPerToken ? `, ${(1000 / result.decodeMsPerToken).toFixed(1)} tok/s` : "";
      notice(
        `${result.prefilledTokens} of ${result.promptTokens} prompt tokens prefilled, ${result.ids.length} generated${speed}${result.stopReason === "aborted" ? " (stopped)" : ""}`,
      );
      rl.prompt();
    }
  } finally {
    rl.close();
    await model.dispose();
  }
}
