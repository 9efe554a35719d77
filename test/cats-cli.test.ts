import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { cats, DATA, MODELS, reference } from "./helpers.js";

describe("cats calibrate, then sparse eval and generate", () => {
  const out = join(mkdtempSync(join(tmpdir(), "cats-cal-")), "T.json");
  const model = join(MODELS, "stories260K");
  beforeAll(async () => {
    const r = await cats(["calibrate", "--model", model, "--data", join(DATA, "tinystories_calib.txt"), "--tokens", "20480", "--out", out, "--json"]);
    expect(r.errors).toEqual([]);
    expect(r.status).toBe(0);
  }, 300_000);

  it("writes a versioned, fingerprinted thresholds file with exact levels and a sketch", async () => {
    const t = JSON.parse(readFileSync(out, "utf8"));
    expect(t).toMatchObject({ format: "cats-thresholds", version: 1, exact_levels: [0.3, 0.5, 0.7, 0.9] });
    expect(t.model.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(t.calibration).toMatchObject({ data: "tinystories_calib.txt", tokens: 20480, windows: 40 });
    expect(t.calibration.data_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(t.sketch.points).toBe(1001);
    expect(t.sketch.per_layer).toHaveLength(5);
    for (const lv of ["0.3", "0.5", "0.7", "0.9"]) expect(t.thresholds[lv]).toHaveLength(5);
  });

  for (const k of [0.3, 0.5, 0.7]) {
    it(`reaches sparsity ${k} within 1 point on held-out text`, async () => {
      const r = await cats(["eval", "--model", model, "--data", join(DATA, "tinystories_heldout.txt"), "--max-tokens", "10220", "--thresholds", out, "--sparsity", String(k), "--json"]);
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
    const r = await cats(["generate", "--model", model, "--max-tokens", "32", "--json", "--thresholds", out, "--sparsity", "0", ref.prompt]);
    const res = JSON.parse(r.stdout);
    expect(res.ids).toEqual(ref.greedy_new_ids);
    expect(res.sparsity).toMatchObject({ target: 0, thresholds_from: "dense", overall: 0 });
    const sparse = JSON.parse((await cats(["generate", "--model", model, "--max-tokens", "32", "--json", "--thresholds", out, "--sparsity", "0.5", ref.prompt])).stdout);
    expect(sparse.sparsity.tokens).toBe(ref.prompt_ids.length + 31);
    expect(sparse.sparsity.overall).toBeGreaterThan(0.4);
  });

  it("refuses the file for another model with one line", async () => {
    const r = await cats(["eval", "--model", join(MODELS, "stories260K-fp16"), "--data", join(DATA, "tinystories_heldout.txt"), "--max-tokens", "100", "--thresholds", out, "--sparsity", "0.5"]);
    expect(r.status).toBe(1);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/T\.json: field "model\.fingerprint": made for model "stories260K"/);
  });

  it("refuses a level outside [0, 1) and a level without a file", async () => {
    expect((await cats(["generate", "--thresholds", out, "--sparsity", "1.2", "hi"])).errors[0]).toMatch(/--sparsity.*expected a sparsity level in \[0, 1\)/);
    const r = await cats(["generate", "--sparsity", "0.5", "hi"]);
    expect(r.status).toBe(1);
    expect(r.errors[0]).toMatch(/--thresholds FILE and --sparsity K go together/);
  });
});
