import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { cats, copyModel, DATA, MODELS, reference, tempDir } from "./helpers.js";

describe("cats calibrate, then sparse eval and generate", () => {
  const out = join(tempDir("cats-cal-"), "T.json");
  const model = join(MODELS, "stories260K");
  beforeAll(async () => {
    const r = await cats([
      "calibrate",
      "--model",
      model,
      "--data",
      join(DATA, "tinystories_calib.txt"),
      "--tokens",
      "20480",
      // 0.9 is left out: it is not evaluated below, and each level is a pass over 20,480 positions.
      "--levels",
      "0.3,0.5,0.7",
      "--out",
      out,
      "--json",
    ]);
    expect(r.errors).toEqual([]);
    expect(r.status).toBe(0);
  }, 300_000);

  it("writes a versioned, fingerprinted thresholds file with exact levels and a sketch", async () => {
    const t = JSON.parse(readFileSync(out, "utf8"));
    expect(t).toMatchObject({ format: "cats-thresholds", version: 1, exact_levels: [0.3, 0.5, 0.7] });
    expect(t.model.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(t.calibration).toMatchObject({ data: "tinystories_calib.txt", tokens: 20480, windows: 40 });
    expect(t.calibration.data_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(t.sketch.points).toBe(1001);
    expect(t.sketch.per_layer).toHaveLength(5);
    for (const lv of ["0.3", "0.5", "0.7"]) expect(t.thresholds[lv]).toHaveLength(5);
  });

  for (const k of [0.3, 0.5, 0.7]) {
    it(`reaches sparsity ${k} within 1 point on held-out text`, async () => {
      const r = await cats([
        "eval",
        "--model",
        model,
        "--data",
        join(DATA, "tinystories_heldout.txt"),
        "--max-tokens",
        "10220",
        "--thresholds",
        out,
        "--sparsity",
        String(k),
        "--json",
      ]);
      expect(r.status).toBe(0);
      const res = JSON.parse(r.stdout);
      expect(res.tokens).toBe(10220);
      expect(res.sparsity.thresholds_from).toBe("exact");
      expect(Math.abs(res.sparsity.overall - k)).toBeLessThan(0.01);
      expect(res.sparsity.per_layer).toHaveLength(5);
    });
  }

  it("generates the dense greedy ids at sparsity 0 and reports sparsity in --json", async () => {
    const ref = reference("stories260K");
    const r = await cats([
      "generate",
      "--model",
      model,
      "--max-tokens",
      "32",
      "--json",
      "--thresholds",
      out,
      "--sparsity",
      "0",
      ref.prompt,
    ]);
    const res = JSON.parse(r.stdout);
    expect(res.ids).toEqual(ref.greedy_new_ids);
    expect(res.sparsity).toMatchObject({ target: 0, thresholds_from: "dense", overall: 0 });
    const sparse = JSON.parse(
      (await cats(["generate", "--model", model, "--max-tokens", "32", "--json", "--thresholds", out, "--sparsity", "0.5", ref.prompt]))
        .stdout,
    );
    expect(sparse.sparsity.tokens).toBe(ref.prompt_ids.length + 31);
    expect(sparse.sparsity.overall).toBeGreaterThan(0.4);
  });

  const benchBothLevels = ["bench", "--model", model, "--thresholds", out, "--sparsity", "0,0.5"];

  it("benchmarks dense against sparse: every level has every field, energy labelled with its source", async () => {
    const dir = tempDir("cats-bench-");
    const r = await cats(
      [
        ...benchBothLevels,
        "--tokens",
        "64",
        "--runs",
        "3",
        "--json",
        "--out",
        dir,
        // Every matrix read whole in row blocks (stories260K's are small enough to stay in rows by default): the
        // report says so, and that W_up has a second copy in rows for the CATS level (UpLayout "both").
      ],
      { CATS_ROW_BLOCKS: "1" },
    );
    expect(r.errors).toEqual([]);
    const report = JSON.parse(r.stdout);
    expect(report.model.weights).toBe("F32, q/k/v, o, gate, up, lm_head in row blocks (CATS steps: up in rows, a second copy)");
    expect(report.levels.map((l: { sparsity_target: number }) => l.sparsity_target)).toEqual([0, 0.5]);
    for (const l of report.levels) {
      for (const k of [
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "weight_bytes_per_token",
        "effective_gb_per_s",
        "speedup_vs_dense",
        "ideal_speedup",
      ])
        expect(l[k], k).toBeGreaterThan(0);
      expect(l.decode_ms_per_token.p10).toBeLessThanOrEqual(l.decode_ms_per_token.median);
      expect(l.decode_ms_per_token.median).toBeLessThanOrEqual(l.decode_ms_per_token.p90);
      expect(l.energy.source).toBe("estimate");
      expect(l.energy.joules_per_token * l.energy.tokens_per_joule).toBeCloseTo(1, 9);
      expect(l.greedy_agreement_with_dense).toBeGreaterThanOrEqual(0);
    }
    const [dense, half] = report.levels;
    expect(dense.measured_sparsity.overall).toBe(0);
    expect(dense.ideal_speedup).toBe(1);
    expect(dense.greedy_agreement_with_dense).toBe(1);
    expect(Math.abs(half.measured_sparsity.overall - 0.5)).toBeLessThan(0.05);
    // Fewer W_up/W_down bytes at 50%: the ideal speed-up is what the bytes skipped allow.
    expect(half.weight_bytes_per_token).toBeLessThan(dense.weight_bytes_per_token);
    expect(half.ideal_speedup).toBeCloseTo(dense.weight_bytes_per_token / half.weight_bytes_per_token, 9);
    // The roofline issue's measure: (1 - 1/speed-up) / (1 - 1/ideal).
    expect(dense.ideal_saving_kept).toBeNull();
    expect(half.ideal_saving_kept).toBeCloseTo((1 - 1 / half.speedup_vs_dense) / (1 - 1 / half.ideal_speedup), 9);
    expect(report.read_ceiling_gb_per_s === null || report.read_ceiling_gb_per_s > 0).toBe(true);
    expect(report.energy_meter).toMatchObject({ source: "estimate", constants: { watts_per_core: 12, watts_per_gb: 0.3725, pue: 1 } });
    expect(report.energy_meter.description).toMatch(/^ESTIMATE/);
    for (const f of ["bench.json", "bench.md", "bench.svg"]) expect(readFileSync(join(dir, f), "utf8").length).toBeGreaterThan(100);
    expect(readFileSync(join(dir, "bench.svg"), "utf8")).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  });

  it("bench --chain decodes the same greedy ids as one submission per token, and says how it decoded", async () => {
    const bench = (chain: string) =>
      cats([...benchBothLevels, "--tokens", "19", "--runs", "1", "--chain", chain, "--json", "--out", tempDir("cats-bench-")]);
    const [one, chained] = await Promise.all([bench("1"), bench("8")]);
    for (const r of [one, chained]) expect(r.errors).toEqual([]);
    const [a, b] = [JSON.parse(one.stdout), JSON.parse(chained.stdout)];
    expect([a.steps_per_submission, b.steps_per_submission]).toEqual([1, 8]);
    // 18 decode steps in chunks of 8, 8 and 2: every step still timed and every id the same.
    for (const l of [0, 1]) {
      expect(b.levels[l].greedy_ids).toHaveLength(19);
      expect(b.levels[l].greedy_ids).toEqual(a.levels[l].greedy_ids);
      expect(b.levels[l].decode_tokens_per_s).toBeGreaterThan(0);
    }
    const table = await cats(["bench", "--model", model, "--tokens", "5", "--runs", "1", "--chain", "4", "--out", tempDir("cats-bench-")]);
    expect(table.stdout).toContain("5 greedy tokens (4 steps chained per submission)");
  });

  it("bench --chain outside 1 .. the engine's chain limit is refused with one line", async () => {
    const tooMany = await cats([
      "bench",
      "--model",
      model,
      "--tokens",
      "4",
      "--runs",
      "1",
      "--chain",
      "257",
      "--out",
      tempDir("cats-bench-"),
    ]);
    expect(tooMany.status).toBe(1);
    expect(tooMany.errors).toEqual(["cats: --chain 257: expected a whole number of steps per submission from 1 to 256"]);
    const zero = await cats(["bench", "--model", model, "--chain", "0"]);
    expect(zero.status).toBe(2);
    expect(zero.errors).toHaveLength(1);
  });

  it("refuses the file for another model with one line", async () => {
    const r = await cats([
      "eval",
      "--model",
      join(MODELS, "stories260K-fp16"),
      "--data",
      join(DATA, "tinystories_heldout.txt"),
      "--max-tokens",
      "100",
      "--thresholds",
      out,
      "--sparsity",
      "0.5",
    ]);
    expect(r.status).toBe(1);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/T\.json: field "model\.fingerprint": made for model "stories260K"/);
  });

  it("refuses a level outside [0, 1) and a level without a file", async () => {
    expect((await cats(["generate", "--thresholds", out, "--sparsity", "1.2", "hi"])).errors[0]).toMatch(
      /--sparsity.*expected a sparsity level in \[0, 1\)/,
    );
    const r = await cats(["generate", "--sparsity", "0.5", "hi"]);
    expect(r.status).toBe(1);
    expect(r.errors[0]).toMatch(/--thresholds FILE and --sparsity K go together/);
  });
});

describe("cats bench --compare", () => {
  const fp32 = join(MODELS, "stories260K");
  const fp16 = join(MODELS, "stories260K-fp16");

  it("decodes each model dense, run by run in turn, each reported against the first", async () => {
    const dir = tempDir("cats-compare-");
    // The fp32 model twice: a model against itself must agree on every id and read the same bytes.
    const r = await cats([
      "bench",
      "--model",
      fp32,
      "--compare",
      `${fp16},${fp32}`,
      "--tokens",
      "8",
      "--runs",
      "2",
      "--json",
      "--out",
      dir,
    ]);
    expect(r.errors).toEqual([]);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.tool).toBe("cats bench --compare");
    expect(report.runs).toBe(2);
    const [first, half, again] = report.models;
    expect(report.models.map((m: { model: string }) => m.model)).toEqual(["stories260K", "stories260K-fp16", "stories260K"]);
    expect([first.weights, half.weights]).toEqual(["F32", "F16"]);
    for (const m of report.models) {
      for (const k of ["decode_tokens_per_s", "weight_bytes_per_token", "effective_gb_per_s", "speedup_vs_first", "ideal_speedup"])
        expect(m[k], k).toBeGreaterThan(0);
      expect(m.greedy_ids).toHaveLength(8);
      expect(m.energy.source).toBe("estimate");
    }
    expect(first.speedup_vs_first).toBe(1);
    // Every weight the step reads is stored at half the bytes: the ideal speed-up is the bytes' ratio.
    expect(half.ideal_speedup).toBeCloseTo(first.weight_bytes_per_token / half.weight_bytes_per_token, 9);
    expect(half.ideal_speedup).toBeCloseTo(2, 1);
    expect(again.weight_bytes_per_token).toBe(first.weight_bytes_per_token);
    expect(again.greedy_ids).toEqual(first.greedy_ids);
    expect(again.greedy_agreement_with_first).toBe(1);
    const same = first.greedy_ids.filter((id: number, i: number) => half.greedy_ids[i] === id).length;
    expect(half.greedy_agreement_with_first).toBe(same / 8);
    expect(JSON.parse(readFileSync(join(dir, "bench.json"), "utf8")).models).toHaveLength(3);
    expect(readFileSync(join(dir, "bench.md"), "utf8")).toContain("| stories260K-fp16 | F16 |");
  });

  it("refuses CATS levels beside --compare (a flag error) and a model with another tokenizer, each with one line", async () => {
    const compareWith = (dir: string) =>
      cats(["bench", "--model", fp32, "--compare", dir, "--tokens", "4", "--runs", "1", "--out", tempDir("cats-compare-")]);
    const both = await cats(["bench", "--model", fp32, "--compare", fp16, "--sparsity", "0,0.5"]);
    expect(both.status).toBe(2);
    expect(both.errors).toHaveLength(1);
    expect(both.errors[0]).toMatch(/--compare.*cannot be used with.*--sparsity/);
    const empty = await cats(["bench", "--model", fp32, "--compare", `${fp16},`]);
    expect(empty.status).toBe(2);
    expect(empty.errors).toHaveLength(1);
    const synth = join(tempDir("cats-compare-"), "tiny");
    expect((await cats(["synth", "--shape", "tiny-test", "--out", synth])).status).toBe(0);
    const other = await compareWith(synth);
    expect(other.status).toBe(1);
    expect(other.errors).toEqual([
      `cats: --compare ${synth}: config.json vocab_size 32000, expected 512 as --model ${fp32} has (one prompt for every model)`,
    ]);
    // The same vocabulary size, but two pieces' ids swapped: the prompt encodes to other ids.
    const swapped = copyModel((dir) => {
      const file = join(dir, "tokenizer.json");
      const t = JSON.parse(readFileSync(file, "utf8"));
      const vocab = t.model.vocab as Record<string, number>;
      [vocab["▁upon"], vocab["▁was"]] = [vocab["▁was"], vocab["▁upon"]];
      writeFileSync(file, JSON.stringify(t));
    });
    const differs = await compareWith(swapped);
    expect(differs.status).toBe(1);
    expect(differs.errors).toEqual([
      `cats: --compare ${swapped}: its tokenizer encodes the prompt differently from --model ${fp32}'s; expected the same tokenizer`,
    ]);
  });
});
