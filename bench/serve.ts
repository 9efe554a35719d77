/**
 * `npm run bench:serve -- [--model NAME] [--clients 16] [--tokens 64] [--rounds 3]`: throughput and
 * latency of `cats serve` under concurrent streaming clients (Node's fetch, SSE parsed by hand), on
 * one model, greedy. Reports per round: aggregate tok/s, time to first token and total latency
 * (median and max over clients), and the deepest queue seen.
 */
import { parseArgs } from "node:util";
import { loadModel } from "../src/index.js";
import { serve } from "../src/serve/server.js";
import { chooseMeter } from "../src/energy/select.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "stories260K" },
    clients: { type: "string", default: "16" },
    tokens: { type: "string", default: "64" },
    rounds: { type: "string", default: "3" },
  },
});
const clients = Number(values.clients);
const tokens = Number(values.tokens);

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function client(url: string, i: number): Promise<{ ttft: number; total: number; tokens: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      prompt: `Once upon a time there was a child number ${i}`,
      max_tokens: tokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  let ttft = 0;
  let n = 0;
  let buffer = "";
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (ttft === 0) ttft = performance.now() - t0;
    buffer += decoder.decode(value, { stream: true });
    for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const usage = JSON.parse(data).usage;
      if (usage) n = usage.completion_tokens;
    }
  }
  return { ttft, total: performance.now() - t0, tokens: n };
}

const model = await loadModel(values.model!);
const { meter } = await chooseMeter();
const server = await serve({ model, port: 0, meter, queueLimit: clients * 2 });
let deepest = 0;
const watch = setInterval(async () => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  deepest = Math.max(deepest, Number(/^cats_queue_depth (\d+)/m.exec(text)?.[1] ?? 0));
}, 20);
console.log(
  `| round | clients | tokens each | wall s | aggregate tok/s | TTFT median / max ms | latency median / max ms | deepest queue |`,
);
console.log(`|---|---|---|---|---|---|---|---|`);
for (let round = 0; round < Number(values.rounds); round++) {
  deepest = 0;
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: clients }, (_, i) => client(server.url, i)));
  const wall = (performance.now() - t0) / 1000;
  const total = results.reduce((s, r) => s + r.tokens, 0);
  const ttft = results.map((r) => r.ttft);
  const lat = results.map((r) => r.total);
  console.log(
    `| ${round + 1} | ${clients} | ${tokens} | ${wall.toFixed(2)} | ${(total / wall).toFixed(1)} | ${median(ttft).toFixed(0)} / ${Math.max(...ttft).toFixed(0)} | ${median(lat).toFixed(0)} / ${Math.max(...lat).toFixed(0)} | ${deepest} |`,
  );
}
clearInterval(watch);
await server.close();
await model.dispose();
process.exit(0);
