import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SYNTH_SHAPES } from "../src/synth/shapes.js";
import { tensorPlan } from "../src/synth/synth.js";
import { cats, DATA, tempDir } from "./helpers.js";

const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

describe("cats synth", () => {
  const base = tempDir("cats-synth-");
  const dir = join(base, "a");

  it("writes the same checkpoint for the same seed, marked synthetic, with the Llama 2 tokenizer", async () => {
    for (const [out, seed] of [
      [dir, "1"],
      [join(base, "b"), "1"],
      [join(base, "c"), "2"],
    ]) {
      const r = await cats(["synth", "--shape", "tiny-test", "--out", out, "--seed", seed]);
      expect(r.status, r.errors.join("\n")).toBe(0);
    }
    expect(sha(join(base, "b", "model.safetensors"))).toBe(sha(join(dir, "model.safetensors")));
    expect(sha(join(base, "c", "model.safetensors"))).not.toBe(sha(join(dir, "model.safetensors")));
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(cfg.cats_synthetic).toBe(true);
    expect(cfg.cats_synthetic_note).toMatch(/SYNTHETIC/);
    expect(cfg).toMatchObject({ hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, vocab_size: 32000 });
    const gen = JSON.parse((await cats(["generate", "--model", dir, "--max-tokens", "5", "--json", "Hello world"])).stdout);
    expect(gen.prompt_ids).toEqual([1, 15043, 3186]);
    expect(gen.ids).toHaveLength(5);
  });

  it("gives real shapes the tensors of a Llama checkpoint", () => {
    const s = SYNTH_SHAPES["llama-110m"];
    const plan = tensorPlan(s);
    const params = plan.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    expect(params).toBeGreaterThan(100e6);
    expect(params).toBeLessThan(140e6);
    expect(plan.find((t) => t.name === "model.layers.11.mlp.down_proj.weight")!.shape).toEqual([768, 2048]);
    expect(SYNTH_SHAPES["llama2-7b-2l"]).toMatchObject({ hidden: 4096, intermediate: 11008, heads: 32, layers: 2, vocab: 32000 });
  });

  it("calibrates on real text into a real spread of quantiles, and bench labels it synthetic", async () => {
    const t = join(base, "T.json");
    const cal = await cats([
      "calibrate",
      "--model",
      dir,
      "--data",
      join(DATA, "tinystories_calib.txt"),
      "--tokens",
      "512",
      "--levels",
      "0.5,0.9",
      "--out",
      t,
    ]);
    expect(cal.status, cal.errors.join("\n")).toBe(0);
    const file = JSON.parse(readFileSync(t, "utf8"));
    expect(file.model.synthetic).toBe(true);
    for (let l = 0; l < 2; l++) {
      expect(file.thresholds["0.5"][l]).toBeGreaterThan(0.05);
      expect(file.thresholds["0.9"][l]).toBeGreaterThan(file.thresholds["0.5"][l] * 1.5);
    }
    const r = await cats([
      "bench",
      "--model",
      dir,
      "--thresholds",
      t,
      "--sparsity",
      "0,0.5",
      "--tokens",
      "8",
      "--runs",
      "1",
      "--json",
      "--out",
      join(base, "bench"),
    ]);
    expect(r.status, r.errors.join("\n")).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.model).toMatchObject({ synthetic: true });
    expect(report.model.note).toMatch(/SYNTHETIC/);
    expect(readFileSync(join(base, "bench", "bench.md"), "utf8")).toMatch(/SYNTHETIC: speed and energy only/);
  });
});
