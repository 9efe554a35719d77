import { spawn } from "node:child_process";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseMeter } from "../src/energy/select.js";
import { collect, loadModel, type CatsModel } from "../src/index.js";
import { serve, type RunningServer } from "../src/serve/server.js";
import { chatModelCopy, MODELS, reference, ROOT } from "./helpers.js";

let model: CatsModel;
let server: RunningServer;
let client: OpenAI;
const ref = reference("stories260K");

beforeAll(async () => {
  model = await loadModel(chatModelCopy(), { tune: false });
  const { meter } = await chooseMeter({ source: "estimate" });
  server = await serve({ model, port: 0, meter, queueLimit: 128 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await server.close();
  await model.dispose();
});

const metric = async (name: string): Promise<number> => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return Number(line?.split(" ").pop());
};

const messages = [{ role: "user" as const, content: "Tell me a story about a cat." }];

describe("cats serve, through the official openai client", () => {
  it("lists the model", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([model.name]);
  });

  it("completions give cats generate's greedy text, streamed or not, with usage and energy", async () => {
    const r = await client.completions.create({ model: model.name, prompt: ref.prompt, max_tokens: 32, temperature: 0 });
    expect(r.choices[0].text).toBe(ref.greedy_new_text);
    expect(r.choices[0].finish_reason).toBe("length");
    const usage = r.usage as OpenAI.CompletionUsage & { cats_energy_joules: number; cats_energy_source: string };
    expect(usage).toMatchObject({ prompt_tokens: ref.prompt_ids.length, completion_tokens: 32 });
    expect(usage.cats_energy_source).toBe("estimate");
    expect(usage.cats_energy_joules).toBeGreaterThan(0);
    const stream = await client.completions.create({ prompt: ref.prompt, max_tokens: 32, temperature: 0, stream: true, model: model.name });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(ref.greedy_new_text);
    expect(finish).toBe("length");
  });

  it("chat completions give the chat template's greedy reply, streamed or not", async () => {
    const expected = (
      await collect(model.generate(model.tokenizer.encode(await model.renderChat(messages, true), false), { maxTokens: 24 }))
    ).text;
    const r = await client.chat.completions.create({ model: model.name, messages, max_tokens: 24, temperature: 0 });
    expect(r.choices[0].message).toMatchObject({ role: "assistant", content: expected });
    const stream = await client.chat.completions.create({
      model: model.name,
      messages,
      max_tokens: 24,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(expected);
    expect(usage?.completion_tokens).toBe(24);
  });

  it("16 concurrent streaming clients all finish with their full outputs; the queue returns to 0", async () => {
    const prompts = Array.from(
      { length: 16 },
      (_, i) => `Once upon a time there was a ${["cat", "dog", "bird", "fish"][i % 4]} named ${"ABCDEFGHIJKLMNOP"[i]}`,
    );
    const solo = new Map<string, string>();
    for (const p of new Set(prompts)) solo.set(p, (await collect(model.generate(p, { maxTokens: 20 }))).text);
    const texts = await Promise.all(
      prompts.map(async (prompt) => {
        const stream = await client.completions.create({ model: model.name, prompt, max_tokens: 20, temperature: 0, stream: true });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
        return text;
      }),
    );
    texts.forEach((t, i) => expect(t).toBe(solo.get(prompts[i])));
    expect(await metric("cats_queue_depth")).toBe(0);
  });

  it("a client that aborts mid-stream cancels its generation and frees the engine for the next request", async () => {
    const tokensBefore = await metric("cats_completion_tokens_total");
    const abort = new AbortController();
    const stream = await client.completions.create(
      { model: model.name, prompt: "Once upon a time", max_tokens: 400, temperature: 0, stream: true },
      { signal: abort.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) if (++chunks === 2) abort.abort();
    } catch {
      // The client reports its own abort; what matters is what the server does.
    }
    const next = await client.completions.create({ model: model.name, prompt: ref.prompt, max_tokens: 8, temperature: 0 });
    expect(next.choices[0].text).toBe((await collect(model.generate(ref.prompt, { maxTokens: 8 }))).text);
    // The aborted request generated far fewer than its 400 tokens (the next one added 8).
    expect((await metric("cats_completion_tokens_total")) - tokensBefore - 8).toBeLessThan(200);
    expect(await metric("cats_queue_depth")).toBe(0);
  });

  it("hundreds of mixed good and malformed requests: every bad one 400 with an error object, the server stays up, memory bounded", async () => {
    const bad: [string, string][] = [
      ["/v1/completions", "{not json"],
      ["/v1/completions", JSON.stringify({ prompt: 42 })],
      ["/v1/completions", JSON.stringify({ prompt: "x", max_tokens: -1 })],
      ["/v1/completions", JSON.stringify({ prompt: "x", temperature: "hot" })],
      ["/v1/completions", JSON.stringify({ prompt: "x", stop: [1, 2] })],
      ["/v1/completions", JSON.stringify({ prompt: "x ".repeat(4000) })],
      ["/v1/chat/completions", JSON.stringify({ messages: [] })],
      ["/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: 7 }] })],
      ["/v1/chat/completions", JSON.stringify([1, 2, 3])],
      ["/v1/completions", JSON.stringify({ prompt: "x", cats_sparsity: 0.5 })],
    ];
    const before = process.memoryUsage().rss;
    const results = await Promise.all(
      Array.from({ length: 240 }, async (_, i) => {
        if (i % 4 === 0) {
          const r = await fetch(`${server.url}/v1/completions`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ prompt: "Lily", max_tokens: 2, temperature: 0 }),
          });
          return { good: true, status: r.status, body: await r.json() };
        }
        const [path, body] = bad[i % bad.length];
        const r = await fetch(`${server.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
        return { good: false, status: r.status, body: await r.json() };
      }),
    );
    for (const r of results) {
      if (r.good) expect(r.status).toBe(200);
      else {
        expect(r.status).toBe(400);
        expect(typeof r.body.error.message).toBe("string");
      }
    }
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect(process.memoryUsage().rss - before).toBeLessThan(200 << 20);
    expect(await metric("cats_queue_depth")).toBe(0);
  });

  it("a full queue answers 429; an API key is required when set", async () => {
    const tight = await serve({ model, port: 0, queueLimit: 1, apiKey: "k" });
    try {
      const post = (key: string | null) =>
        fetch(`${tight.url}/v1/completions`, {
          method: "POST",
          headers: { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
          body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 40, temperature: 0 }),
        });
      expect((await post(null)).status).toBe(401);
      expect((await post("wrong")).status).toBe(401);
      const statuses = await Promise.all([post("k"), post("k"), post("k")].map(async (p) => (await p).status));
      expect(statuses.filter((s) => s === 200)).not.toHaveLength(0);
      expect(statuses.filter((s) => s === 429)).not.toHaveLength(0);
    } finally {
      await tight.close();
    }
  });
});

describe("the cats serve command", () => {
  it("listens on the port it names, answers, and stops cleanly on SIGTERM", async () => {
    const child = spawn(process.execPath, [join(ROOT, "bin/cats.js"), "serve", "--port", "0"], {
      env: { ...process.env, CATS_MODELS: MODELS },
    });
    let stderr = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on("data", (c) => {
        stderr += c;
        const m = /serving stories260K on (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on("close", () => reject(new Error(`cats serve exited: ${stderr}`)));
    });
    const r = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: ref.prompt, max_tokens: 32, temperature: 0 }),
    });
    expect((await r.json()).choices[0].text).toBe(ref.greedy_new_text);
    child.kill("SIGTERM");
    expect(await new Promise((resolve) => child.on("close", (code) => resolve(code)))).toBe(0);
  });
});
