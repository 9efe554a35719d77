import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cats, copyModel, DATA, MODELS, reference } from "./helpers.js";

describe("cats generate", () => {
  for (const model of ["stories260K", "stories260K-fp16"]) {
    it(`--json returns reference.json's greedy ids for ${model}`, async () => {
      const ref = reference(model);
      const r = await cats(["generate", "--model", join(MODELS, model), "--temperature", "0", "--max-tokens", "32", "--json", ref.prompt]);
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.prompt_ids).toEqual(ref.prompt_ids);
      expect(out.ids).toEqual(ref.greedy_new_ids);
      expect(out.text).toBe(ref.greedy_new_text);
      for (const k of ["load_ms", "prefill_ms", "decode_ms_per_token", "tokens_per_s"]) expect(out.timings[k]).toBeGreaterThan(0);
    });
  }

  it("streams the prompt and continuation as text, finding the default model by name", async () => {
    const r = await cats(["generate", "--max-tokens", "8", "Once upon a time"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("Once upon a time, there was a little girl\n");
  });

  it("reproduces a seeded sample", async () => {
    const args = ["generate", "--temperature", "0.9", "--top-p", "0.9", "--seed", "42", "--max-tokens", "20", "--json", "Lily"];
    expect(JSON.parse((await cats(args)).stdout).ids).toEqual(JSON.parse((await cats(args)).stdout).ids);
  });
});

describe("cats eval", () => {
  it("gives the reference perplexity on the first 20,440 TinyStories tokens", async () => {
    const ref = reference("stories260K").perplexity["tinystories_valid_head.txt"];
    const r = await cats([
      "eval",
      "--model",
      join(MODELS, "stories260K"),
      "--data",
      join(DATA, "tinystories_valid_head.txt"),
      "--max-tokens",
      "20440",
      "--json",
    ]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toBe(ref.predicted_tokens);
    expect(out.windows).toBe(ref.windows);
    expect(Math.abs(out.perplexity / ref.ppl - 1)).toBeLessThan(0.005);
  });
});

describe("errors are one clear line and a non-zero exit", () => {
  const expectOneLine = (r: Awaited<ReturnType<typeof cats>>, message: RegExp) => {
    expect(r.status).not.toBe(0);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(message);
    expect(r.errors[0]).not.toMatch(/\bat .*\.js:\d+/);
  };

  it("a missing model directory", async () =>
    expectOneLine(await cats(["generate", "--model", "/no/such/model", "hi"]), /model directory \/no\/such\/model does not exist/));
  it("an unknown model name", async () =>
    expectOneLine(await cats(["generate", "--model", "no-such-model", "hi"]), /model "no-such-model" not found/));
  it("a truncated safetensors file", async () => {
    const dir = copyModel((d) => {
      const full = readFileSync(join(d, "model.safetensors"));
      writeFileSync(join(d, "model.safetensors"), full.subarray(0, 5000));
    });
    expectOneLine(
      await cats(["generate", "--model", dir, "hi"]),
      /model\.safetensors: tensor ".+": field "data_offsets": end \d+ lies outside the data section/,
    );
  });
  it("an unsupported config", async () => {
    const dir = copyModel((d) => {
      const cfg = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
      writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, rope_scaling: { type: "yarn", factor: 4 } }));
    });
    expectOneLine(await cats(["generate", "--model", dir, "hi"]), /config\.json: field "rope_scaling": expected null/);
  });
  it("a prompt longer than the context", async () => {
    expectOneLine(
      await cats(["generate", "--max-tokens", "4", "Once upon a time ".repeat(200)]),
      /prompt is \d+ tokens but the model's context is 512/,
    );
  });
  it("--max-tokens 0", async () =>
    expectOneLine(await cats(["generate", "--max-tokens", "0", "hi"]), /--max-tokens.*expected a positive integer, got "0"/));
  it("a negative temperature", async () =>
    expectOneLine(await cats(["generate", "--temperature", "-1", "hi"]), /--temperature.*expected a number >= 0/));
  it("a negative top-k", async () =>
    expectOneLine(await cats(["generate", "--top-k", "-3", "hi"]), /--top-k.*expected a non-negative integer/));
  it("a missing data file", async () =>
    expectOneLine(await cats(["eval", "--data", "/no/such.txt"]), /\/no\/such\.txt: cannot read \(ENOENT\)/));
});

describe("bad flags exit 2 with one cats: line, in every command", () => {
  const expectBadFlag = (r: Awaited<ReturnType<typeof cats>>, message: RegExp) => {
    expect(r.status).toBe(2);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^cats: /);
    expect(r.errors[0]).toMatch(message);
  };
  it("generate --sparsity 1.5", async () =>
    expectBadFlag(await cats(["generate", "--sparsity", "1.5", "hi"]), /--sparsity.*expected a sparsity level in \[0, 1\), got "1.5"/));
  it("bench --sparsity 1.5", async () =>
    expectBadFlag(
      await cats(["bench", "--sparsity", "0.5,1.5"]),
      /--sparsity.*expected comma-separated sparsity levels in \[0, 1\), got "1.5"/,
    ));
  it("bench --tokens 1: no decode step to time", async () =>
    expectBadFlag(
      await cats(["bench", "--tokens", "1", "--runs", "1"]),
      /--tokens.*expected at least 2 \(the first token comes from the prefill/,
    ));
  it("calibrate --levels 2", async () =>
    expectBadFlag(
      await cats(["calibrate", "--data", "x.txt", "--levels", "2"]),
      /--levels.*expected comma-separated levels in \(0, 1\), got "2"/,
    ));
  it("an unknown op or variant in --variant, with the valid names listed", async () => {
    expectBadFlag(await cats(["generate", "--variant", "matvek=rows", "hi"]), /unknown op "matvek" \(ops: matvec, matmul,/);
    expectBadFlag(await cats(["info", "--variant", "matvec=fastest"]), /op matvec has variants /);
  });
  it("--kernels tpu", async () =>
    expectBadFlag(await cats(["eval", "--data", "x.txt", "--kernels", "tpu"]), /expected "cpu" or "gpu", got "tpu"/));
});

describe("bad settings and impossible requests are one line, exit 1", () => {
  it("CATS_KERNELS=tpu", async () => {
    const r = await cats(["generate", "hi"], { CATS_KERNELS: "tpu" });
    expect(r.status).toBe(1);
    expect(r.errors).toEqual(['cats: CATS_KERNELS: expected "cpu" or "gpu", got "tpu"']);
  });
  it("CATS_ROW_BLOCKS=yes", async () => {
    for (const args of [["generate", "hi"], ["info"]]) {
      const r = await cats(args, { CATS_ROW_BLOCKS: "yes" });
      expect(r.status).toBe(1);
      expect(r.errors).toEqual(['cats: CATS_ROW_BLOCKS: expected 0 or 1, got "yes"']);
    }
  });
  it("CATS_VARIANTS naming an unknown variant", async () => {
    const r = await cats(["generate", "hi"], { CATS_VARIANTS: "argmax=bogus" });
    expect(r.status).toBe(1);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^cats: variant override "argmax=bogus": op argmax has variants /);
  });
  it("bench --tokens beyond the context", async () => {
    const r = await cats(["bench", "--tokens", "600", "--runs", "1"]);
    expect(r.status).toBe(1);
    const errors = r.errors.filter((l) => l.startsWith("cats: "));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^cats: --tokens 600 does not fit: a 32-token prompt leaves 480 positions of the model's 512-token context/);
  });
});
