import { execFile, spawn } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect, loadModel, type CatsModel } from "../src/index.js";
import { KERNEL_FILES } from "../src/gpu/kernel-files.js";
import { cats, chatModelCopy, MODELS, reference, ROOT } from "./helpers.js";

const STORIES = join(MODELS, "stories260K");

describe("the package by its name", () => {
  it('import { loadModel } from "cats" generates reference.json\'s greedy ids', async () => {
    const ref = reference("stories260K");
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [join(ROOT, "test/fixtures/import-by-name.mjs"), STORIES, ref.prompt, String(ref.greedy_new_ids.length)],
        { cwd: ROOT, encoding: "utf8" },
        (e, out, err) => (e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out)),
      ),
    );
    expect(JSON.parse(stdout)).toEqual(ref.greedy_new_ids);
  });

  it("the browser entry's kernel list is every file of kernels/", () => {
    const files = readdirSync(join(ROOT, "kernels"))
      .filter((f) => f.endsWith(".wgsl"))
      .map((f) => f.replace(/\.wgsl$/, ""))
      .sort();
    expect([...KERNEL_FILES].sort()).toEqual(files);
  });
});

describe("the library API", () => {
  let model: CatsModel;
  beforeAll(async () => {
    model = await loadModel(chatModelCopy(), { tune: false });
  });
  afterAll(() => model.dispose());

  it("streams pieces whose text and ids add up to the result", async () => {
    const ref = reference("stories260K");
    const pieces = model.generate(ref.prompt, { maxTokens: 32 });
    let text = "";
    const ids: number[] = [];
    let r = await pieces.next();
    while (!r.done) {
      text += r.value.text;
      ids.push(...r.value.ids);
      r = await pieces.next();
    }
    expect(ids).toEqual(ref.greedy_new_ids);
    expect(r.value.ids).toEqual(ref.greedy_new_ids);
    expect(text).toBe(r.value.text);
    expect(text).toBe(ref.greedy_new_text);
    expect(r.value.stopReason).toBe("max_tokens");
  });

  it("stops before a stop string, which the text never contains", async () => {
    const ref = reference("stories260K");
    const stop = "Lily";
    const r = await collect(model.generate(ref.prompt, { maxTokens: 32, stop: [stop] }));
    expect(r.stopReason).toBe("stop");
    expect(r.text).toBe(ref.greedy_new_text.slice(0, ref.greedy_new_text.indexOf(stop)));
  });

  it("an aborted signal ends the generation after the current submission", async () => {
    const abort = new AbortController();
    const pieces = model.generate("Once upon a time", { maxTokens: 200, signal: abort.signal });
    await pieces.next();
    abort.abort();
    const r = await collect(pieces);
    expect(r.stopReason).toBe("aborted");
    expect(r.ids.length).toBeLessThan(200);
  });

  it("queues calls: two generations started together give the same ids as one after the other", async () => {
    const [a, b] = await Promise.all([
      collect(model.generate("Lily", { maxTokens: 12 })),
      collect(model.generate("Tom", { maxTokens: 12 })),
    ]);
    expect((await collect(model.generate("Lily", { maxTokens: 12 }))).ids).toEqual(a.ids);
    expect((await collect(model.generate("Tom", { maxTokens: 12 }))).ids).toEqual(b.ids);
  });

  it("chat renders the template and, reusing the cache, prefills only the new turn", async () => {
    const first = [{ role: "user", content: "Tell me a story." }];
    const rendered = await model.renderChat(first, true);
    expect(rendered).toBe("<|user|>\nTell me a story.</s>\n<|assistant|>\n");
    const one = await collect(model.chat(first, { maxTokens: 16, reuseCache: true }));
    expect(one.prefilledTokens).toBe(one.promptTokens);
    const second = [...first, { role: "assistant", content: one.text }, { role: "user", content: "And then?" }];
    const two = await collect(model.chat(second, { maxTokens: 16, reuseCache: true }));
    // The cache holds the first prompt and the reply's tokens; the rest is the new turn.
    const promptTwo = model.tokenizer.encode(await model.renderChat(second, true), false);
    const promptOne = model.tokenizer.encode(rendered, false);
    let shared = 0;
    const cached = [...promptOne, ...one.ids].slice(0, promptOne.length + one.ids.length - 1);
    while (shared < cached.length && cached[shared] === promptTwo[shared]) shared++;
    expect(two.promptTokens).toBe(promptTwo.length);
    expect(two.prefilledTokens).toBe(promptTwo.length - shared);
    expect(two.prefilledTokens).toBeLessThan(promptTwo.length - promptOne.length + 2);
    // Reusing the cache gives the ids a fresh prefill gives.
    const fresh = await collect(model.chat(second, { maxTokens: 16 }));
    expect(fresh.prefilledTokens).toBe(promptTwo.length);
    expect(two.ids).toEqual(fresh.ids);
  });
});

describe("cats chat", () => {
  it("keeps the history: the second turn prefills only what is new, /exit leaves", async () => {
    const dir = chatModelCopy();
    const child = spawn(
      process.execPath,
      [join(ROOT, "bin/cats.js"), "chat", "--model", dir, "--max-tokens", "12", "--system", "Be brief."],
      {
        env: { ...process.env, CATS_MODELS: MODELS },
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.stdin.write("Tell me a story.\nAnd then?\n/exit\n");
    const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(status).toBe(0);
    const turns = [...stderr.matchAll(/cats: (\d+) of (\d+) prompt tokens prefilled, (\d+) generated/g)].map((m) => m.slice(1).map(Number));
    expect(turns).toHaveLength(2);
    expect(turns[0][0]).toBe(turns[0][1]);
    // Turn two's prompt holds turn one's prompt and reply; only the rest is prefilled.
    expect(turns[1][1]).toBeGreaterThan(turns[0][1] + turns[0][2]);
    expect(turns[1][0]).toBeLessThan(turns[1][1] - turns[0][1]);
    expect(stdout.split("\n").filter((l) => l.trim() !== "")).toHaveLength(2);
  });

  it("refuses a model without a chat template with one line", async () => {
    const r = await cats(["chat", "--model", join(MODELS, "stories260K")]);
    expect(r.status).toBe(1);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/tokenizer_config\.json: no chat_template: stories260K is not a chat model/);
  });
});

describe("generation_config.json", () => {
  it("adds its eos_token_id list to the end-of-sequence ids", async () => {
    const ref = reference("stories260K");
    const stopAt = ref.greedy_new_ids[5];
    const dir = chatModelCopy();
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [2, stopAt] }));
    const r = await cats(["generate", "--model", dir, "--max-tokens", "32", "--json", ref.prompt]);
    const out = JSON.parse(r.stdout);
    expect(out.stop_reason).toBe("eos");
    expect(out.ids).toEqual(ref.greedy_new_ids.slice(0, ref.greedy_new_ids.indexOf(stopAt) + 1));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: "x" }));
    const bad = await cats(["generate", "--model", dir, "hi"]);
    expect(bad.errors).toHaveLength(1);
    expect(bad.errors[0]).toMatch(/generation_config\.json: field "eos_token_id": expected a token id or a list of token ids/);
  });
});
