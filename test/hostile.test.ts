import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { totalmem } from "node:os";
import { beforeAll, describe, expect, it } from "vitest";
import { memorySource } from "../src/model/bytesource.js";
import { readSafetensorsHeader } from "../src/model/safetensors.js";
import { escapeControl } from "../src/model/describe.js";
import { backtrackingRisk, pythonTruthy } from "../src/tokenizer/validate.js";
import { StderrFilter } from "../src/cli/launcher.js";
import { generate } from "../src/engine/generate.js";
import { CatsError } from "../src/errors.js";
import { safetensorsHeader } from "../src/model/safetensors-writer.js";
import { loadModel } from "../src/node.js";
import { cats, copyModel, DATA, MODELS, ROOT, safetensorsBytes, smallCalibrationArgs, splitSafetensors, tempDir } from "./helpers.js";

type Run = Awaited<ReturnType<typeof cats>>;

/** One line on stderr, starting "cats:", the given exit status, no stack trace. */
function expectOneLine(r: Run, status: number, message: RegExp): void {
  expect(r.errors, r.errors.join("\n")).toHaveLength(1);
  expect(r.errors[0]).toMatch(/^cats: /);
  expect(r.errors[0]).toMatch(message);
  expect(r.errors[0]).not.toMatch(/\bat .*\.js:\d+/);
  expect(r.status).toBe(status);
}

const STORIES = join(MODELS, "stories260K");
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8"));
const patchJson = (path: string, patch: (j: Record<string, unknown>) => void) => {
  const j = readJson(path);
  patch(j);
  writeFileSync(path, JSON.stringify(j));
};

/** Changes the f32 values of one tensor of the model copy in `dir` in place. */
function patchWeights(dir: string, tensor: string, patch: (values: Float32Array) => void): void {
  const path = join(dir, "model.safetensors");
  const bytes = new Uint8Array(readFileSync(path));
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const [begin, end] = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))[tensor].data_offsets;
  const values = new Float32Array(bytes.slice(8 + n + begin, 8 + n + end).buffer);
  patch(values);
  bytes.set(new Uint8Array(values.buffer), 8 + n + begin);
  writeFileSync(path, bytes);
}

describe("silent wrong answers become errors", () => {
  const nonFinite: [string, (dir: string) => void][] = [
    ["one NaN in q_proj", (d) => patchWeights(d, "model.layers.0.self_attn.q_proj.weight", (w) => (w[10] = NaN))],
    ["an infinite norm gain", (d) => patchWeights(d, "model.layers.2.post_attention_layernorm.weight", (w) => (w[3] = Infinity))],
    ["an all-NaN embedding", (d) => patchWeights(d, "model.embed_tokens.weight", (w) => w.fill(NaN))],
  ];
  for (const [i, [what, patch]] of nonFinite.entries()) {
    it(`${what}: generate stops with the position, --check-weights and info --model name the tensor`, async () => {
      const dir = copyModel(patch);
      expectOneLine(await cats(["generate", "--model", dir, "--max-tokens", "8", "Once"]), 1, /logits at position \d+ are not finite/);
      if (i > 0) {
        expectOneLine(await cats(["info", "--model", dir]), 1, /holds a non-finite value/);
        return;
      }
      expectOneLine(
        await cats(["generate", "--model", dir, "--check-weights", "--max-tokens", "8", "Once"]),
        1,
        /model\.safetensors: tensor "model\..+" holds a non-finite value \(NaN or infinity\) at \[\d+, \d+\]|at \[\d+\]/,
      );
      expectOneLine(await cats(["info", "--model", dir]), 1, /holds a non-finite value/);
    });
  }

  it("a down_proj of 1e38 overflows to infinity: eval stops instead of printing perplexity NaN", async () => {
    const dir = copyModel((d) => patchWeights(d, "model.layers.0.mlp.down_proj.weight", (w) => w.fill(1e38)));
    const r = await cats(["eval", "--model", dir, "--data", join(DATA, "tinystories_heldout.txt"), "--max-tokens", "600"]);
    expectOneLine(r, 1, /logits at position \d+ are not finite/);
    expect(r.stdout).not.toMatch(/NaN/);
  });

  it("a healthy model passes info --model's scan", async () => {
    const r = await cats(["info", "--model", STORIES, "--json"]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).model).toMatchObject({ tensors: 47, weights_finite: true, layers: 5 });
  });

  describe("safetensors whose tensors do not tile the data section", () => {
    const real = readFileSync(join(STORIES, "model.safetensors"));
    const { header, data } = splitSafetensors(real);
    const text = JSON.stringify(header);
    const parse = (bytes: Uint8Array) => readSafetensorsHeader(memorySource("m.safetensors", bytes));
    it("accepts the real file as it is", async () => {
      expect((await parse(new Uint8Array(real))).tensors.size).toBe(47);
    });
    it("a length field one short (the JSON still parses, every tensor read one byte early)", async () => {
      const padded = safetensorsBytes(text + " ", data, BigInt(text.length));
      await expect(parse(padded)).rejects.toThrow(/the tensors end at data byte \d+ but the data section holds \d+ bytes/);
    });
    it("padding appended without updating the header", async () => {
      const more = new Uint8Array(data.length + 16);
      more.set(data);
      await expect(parse(safetensorsBytes(text, more))).rejects.toThrow(/data section holds \d+ bytes/);
    });
    it("every offset shifted, bytes appended", async () => {
      const shifted = JSON.parse(text);
      for (const [k, v] of Object.entries(shifted))
        if (k !== "__metadata__") (v as { data_offsets: number[] }).data_offsets.forEach((_, i, a) => (a[i] += 8));
      const more = new Uint8Array(data.length + 8);
      more.set(data, 8);
      await expect(parse(safetensorsBytes(JSON.stringify(shifted), more))).rejects.toThrow(
        /leaving bytes 0\.\.8 of the data section unused/,
      );
    });
  });

  it("a config with fewer layers than the checkpoint names the unused tensors", async () => {
    const dir = copyModel((d) => patchJson(join(d, "config.json"), (c) => (c.num_hidden_layers = 4)));
    expectOneLine(
      await cats(["generate", "--model", dir, "hi"]),
      1,
      /tensor "model\.layers\.4\..+" and \d+ more not used by a 4-layer LlamaForCausalLM.*disagree/,
    );
  });

  describe("token ids the embedding does not have are refused at load", () => {
    it("bos_token_id 600", async () => {
      const dir = copyModel((d) => patchJson(join(d, "config.json"), (c) => (c.bos_token_id = 600)));
      expectOneLine(await cats(["generate", "--model", dir, "hi"]), 1, /config\.json: special token id 600 .* not below vocab_size 512/);
    });
    it("an added token with id 600", async () => {
      const dir = copyModel((d) =>
        patchJson(join(d, "tokenizer.json"), (t) => (t.added_tokens as unknown[]).push({ id: 600, content: "<x>", special: true })),
      );
      expectOneLine(
        await cats(["generate", "--model", dir, "hi"]),
        1,
        /tokenizer\.json: added token "<x>" has id 600, but .*vocab_size is 512/,
      );
    });
    it("a byte token remapped to 700", async () => {
      const dir = copyModel((d) =>
        patchJson(join(d, "tokenizer.json"), (t) => ((t.model as { vocab: Record<string, number> }).vocab["<0x0A>"] = 700)),
      );
      expectOneLine(await cats(["generate", "--model", dir, "hi"]), 1, /token "<0x0A>" in model\.vocab has id 700/);
    });
  });

  describe("tokenizer files are validated, flags read as transformers reads them", () => {
    for (const vocab of ["abc", {}]) {
      it(`a vocab of ${JSON.stringify(vocab)}`, async () => {
        const dir = copyModel((d) => patchJson(join(d, "tokenizer.json"), (t) => ((t.model as { vocab: unknown }).vocab = vocab)));
        expectOneLine(
          await cats(["generate", "--model", dir, "hi"]),
          1,
          /tokenizer\.json: field "model\.vocab": expected a non-empty object/,
        );
      });
    }
    it('add_bos_token "false", "true" and 1 all keep BOS (Python truthiness)', async () => {
      for (const v of ["false", "true", 1]) {
        const dir = copyModel((d) => patchJson(join(d, "tokenizer_config.json"), (t) => (t.add_bos_token = v)));
        const r = await cats(["generate", "--model", dir, "--max-tokens", "1", "--json", "Once"]);
        expect(JSON.parse(r.stdout).prompt_ids[0]).toBe(1);
      }
      expect([false, 0, "", null, [], {}].map(pythonTruthy)).toEqual([false, false, false, false, false, false]);
    });
  });

  describe("tampered thresholds files", () => {
    let file: string;
    let good: Record<string, unknown> & { thresholds: Record<string, number[]>; sketch: { per_layer: number[][] } };
    beforeAll(async () => {
      file = join(tempDir("cats-t-"), "T.json");
      const r = await cats(smallCalibrationArgs(file));
      expect(r.status, r.errors.join("\n")).toBe(0);
      good = readJson(file);
    }, 120_000);
    const tampered = (patch: (t: typeof good) => void) => {
      const t = structuredClone(good);
      patch(t);
      const path = join(tempDir("cats-t-"), "T.json");
      writeFileSync(path, JSON.stringify(t));
      return path;
    };
    const generate = (path: string) =>
      cats(["generate", "--model", STORIES, "--thresholds", path, "--sparsity", "0.5", "--max-tokens", "16", "Once"]);
    it("a negative threshold", async () => {
      expectOneLine(
        await generate(tampered((t) => (t.thresholds["0.5"][2] = -1))),
        1,
        /field "thresholds\.0\.5": expected 5 finite numbers >= 0/,
      );
    });
    it("a higher level with lower thresholds (0.5 holding 0.9's values)", async () => {
      expectOneLine(
        await generate(tampered((t) => (t.thresholds["0.5"] = good.thresholds["0.9"].map((v) => v * 1.01)))),
        1,
        /field "thresholds\.0\.9": expected thresholds at least those of level 0\.5/,
      );
    });
    it("a non-monotonic sketch", async () => {
      expectOneLine(
        await generate(tampered((t) => t.sketch.per_layer[1].reverse())),
        1,
        /field "sketch\.per_layer\.1": expected non-decreasing quantiles/,
      );
    });
    it("a level whose values belong to another level runs, with a warning naming both figures", async () => {
      const r = await generate(tampered((t) => (t.thresholds = { "0.5": good.thresholds["0.9"] })));
      expect(r.status).toBe(0);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatch(/^cats: warning: sparsity 50% was requested but (8\d|9\d)\.\d% of MLP activations were zeroed/);
    });
    it("1e30 thresholds (everything zeroed) warn too", async () => {
      const r = await generate(tampered((t) => (t.thresholds = { "0.5": t.thresholds["0.5"].map(() => 1e30) })));
      expect(r.errors[0]).toMatch(/requested but 100\.0% of MLP activations were zeroed/);
    });
  });

  it("eval reads text with universal newlines: CRLF wikitext-2 scores as its LF copy, --keep-cr keeps the bytes", async () => {
    // At 20,440 tokens this file gives reference.json's 129.79 (156.24 with the \r's as byte tokens);
    // a few windows show the same equivalence in a fraction of the time.
    // A prefix of the file cut at a line end: tokenizing all 1.3 MB three times would dominate the test.
    const raw = readFileSync(join(DATA, "wikitext2_raw_test.txt"), "utf8");
    const head = raw.slice(0, raw.indexOf("\r\n", 60_000) + 2);
    expect(head).toContain("\r\n");
    const dir = tempDir("cats-lf-");
    const [crlf, lf] = [join(dir, "crlf.txt"), join(dir, "lf.txt")];
    writeFileSync(crlf, head);
    writeFileSync(lf, head.replace(/\r\n?/g, "\n"));
    const ppl = async (f: string, ...more: string[]) =>
      JSON.parse((await cats(["eval", "--data", f, "--max-tokens", "1533", "--json", ...more])).stdout).perplexity;
    const [a, b, c] = [await ppl(lf), await ppl(crlf), await ppl(crlf, "--keep-cr")];
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });
});

describe("nothing hangs", () => {
  const fifo = (path: string) => execFileSync("mkfifo", [path]);
  for (const name of ["model.safetensors", "config.json", "tokenizer.json"]) {
    it(`a FIFO named ${name}`, async () => {
      const dir = copyModel((d) => {
        rmSync(join(d, name));
        fifo(join(d, name));
      });
      expectOneLine(
        await cats(["generate", "--model", dir, "hi"]),
        1,
        new RegExp(`${name.replace(".", "\\.")}: expected a regular file, found a FIFO`),
      );
    });
  }
  it("a FIFO as --thresholds or --data", async () => {
    const dir = tempDir("cats-fifo-");
    fifo(join(dir, "f"));
    expectOneLine(
      await cats(["generate", "--thresholds", join(dir, "f"), "--sparsity", "0.5", "hi"]),
      1,
      /f: expected a regular file, found a FIFO/,
    );
    expectOneLine(await cats(["eval", "--data", join(dir, "f")]), 1, /f: expected a regular file, found a FIFO/);
  });
  it("bench:kernels --mlp none names the flag and the expected shapes, before any GPU work", () => {
    const r = spawnSync(process.execPath, [join(ROOT, "dist/bench/kernels.js"), "--mlp", "none"], { encoding: "utf8", timeout: 60_000 });
    const run: Run = {
      status: r.status,
      stdout: r.stdout,
      errors: r.stderr.split("\n").filter((l) => l.trim() !== "" && !/^Warning: /.test(l)),
    };
    expectOneLine(run, 2, /--mlp "none": expected shapes like 4096x4096/);
    expect(r.stdout).toBe("");
  });

  it("bench --out under /proc", async () => {
    expectOneLine(
      await cats(["bench", "--out", "/proc/x/y", "--tokens", "2", "--runs", "1"]),
      1,
      /--out \/proc\/x\/y: (cannot create \/proc\/x|directory \/proc is not writable)/,
    );
  });
  it("a pre-tokenizer pattern with catastrophic backtracking is refused", async () => {
    const dir = copyModel((d) =>
      patchJson(
        join(d, "tokenizer.json"),
        (t) => (t.pre_tokenizer = { type: "Split", pattern: { Regex: "(a|aa)+$" }, behavior: "Isolated" }),
      ),
    );
    expectOneLine(
      await cats(["generate", "--model", dir, "a".repeat(40) + "b"]),
      1,
      /pre-tokenizer pattern "\(a\|aa\)\+\$" repeats a group/,
    );
    expect(["(a|aa)+$", "(a+)*", "(?:x|y){2,}", "((ab)+c)+"].map(backtrackingRisk)).toEqual([true, true, true, true]);
    const gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    const llama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    expect([gpt2, llama3, "[(a|b)+]+"].map(backtrackingRisk)).toEqual([false, false, false]);
  });
});

describe("no stack traces: one line each", () => {
  it("a closed stdout ends generate quietly with status 0", async () => {
    const child = spawn(process.execPath, [join(ROOT, "bin/cats.js"), "generate", "--max-tokens", "200", "Once upon a time"], {
      env: { ...process.env, CATS_MODELS: MODELS },
    });
    let stderr = "";
    child.stderr.on("data", (c) => (stderr += c));
    child.stdout.once("data", () => child.stdout.destroy());
    const status = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    expect(stderr).toBe("");
    expect(status).toBe(0);
  });
  it("a directory named model.safetensors", async () => {
    const dir = copyModel((d) => {
      rmSync(join(d, "model.safetensors"));
      mkdirSync(join(d, "model.safetensors"));
    });
    expectOneLine(await cats(["generate", "--model", dir, "hi"]), 1, /model\.safetensors: expected a regular file, found a directory/);
  });
  it("an index file containing null", async () => {
    const dir = copyModel((d) => {
      rmSync(join(d, "model.safetensors"));
      writeFileSync(join(d, "model.safetensors.index.json"), "null");
    });
    expectOneLine(
      await cats(["generate", "--model", dir, "hi"]),
      1,
      /model\.safetensors\.index\.json: field "weight_map": expected an object/,
    );
  });
  it("__metadata__ nested 100,000 deep", async () => {
    const dir = copyModel((d) => {
      const { header, data } = splitSafetensors(readFileSync(join(d, "model.safetensors")));
      const text = JSON.stringify({ ...header, __metadata__: "X" }).replace('"X"', '{"a":'.repeat(100_000) + "1" + "}".repeat(100_000));
      writeFileSync(join(d, "model.safetensors"), safetensorsBytes(text, data));
    });
    expectOneLine(await cats(["generate", "--model", dir, "hi"]), 1, /field "__metadata__\.a": expected a string, got an object/);
  });
  it("max_position_embeddings 2^53 loads with the capped context; --context above the config is refused", async () => {
    const dir = copyModel((d) => patchJson(join(d, "config.json"), (c) => (c.max_position_embeddings = 2 ** 53)));
    const r = await cats(["generate", "--model", dir, "--max-tokens", "4", "--json", "Once"]);
    expect(r.status).toBe(0);
    expect(r.errors).toEqual([]);
    expectOneLine(
      await cats(["generate", "--context", "1024", "hi"]),
      1,
      /--context 1024: .*config\.json allows at most max_position_embeddings 512/,
    );
  });
  it("generation that fills --context says so on stderr in text mode", async () => {
    const r = await cats(["generate", "--context", "16", "--max-tokens", "100", "Once upon a time"]);
    expect(r.status).toBe(0);
    expect(r.errors).toEqual(["cats: stopped after 12 tokens: the context of 16 positions is full (--context)"]);
  });
  it("bench --prompt-tokens 600 names --prompt-tokens", async () => {
    expectOneLine(
      await cats(["bench", "--prompt-tokens", "600", "--out", tempDir("cats-b-")]),
      1,
      /--prompt-tokens 600: expected at most 511/,
    );
  });
  it("--out at an existing file, under a file, in a missing directory, or naming an input", async () => {
    const dir = tempDir("cats-out-");
    writeFileSync(join(dir, "file"), "x");
    mkdirSync(join(dir, "sub"));
    const data = join(DATA, "tinystories_calib.txt");
    expectOneLine(await cats(["bench", "--out", join(dir, "file")]), 1, /--out .*file: .*file is a file, not a directory/);
    expectOneLine(await cats(["bench", "--out", join(dir, "file", "deeper")]), 1, /a parent of it is a file, not a directory/);
    expectOneLine(
      await cats(["calibrate", "--data", data, "--out", join(dir, "sub")]),
      1,
      /--out .*sub: exists and is a directory; expected a file path/,
    );
    expectOneLine(
      await cats(["calibrate", "--data", data, "--out", join(dir, "missing", "T.json")]),
      1,
      /directory .*missing does not exist/,
    );
    expectOneLine(await cats(["calibrate", "--data", data, "--out", data]), 1, /is an input of this command/);
    const model = copyModel();
    expectOneLine(
      await cats(["calibrate", "--model", model, "--data", data, "--out", join(model, "config.json")]),
      1,
      /is an input of this command/,
    );
    expectOneLine(
      await cats([
        "synth",
        "--shape",
        "llama-110m",
        "--tokenizer",
        join(MODELS, "llama2-tokenizer"),
        "--out",
        join(MODELS, "llama2-tokenizer"),
      ]),
      1,
      /is an input of this command|holds a model/,
    );
    expectOneLine(
      await cats(["synth", "--shape", "llama-110m", "--tokenizer", join(MODELS, "llama2-tokenizer"), "--out", model]),
      1,
      /holds a model .* cats synth did not write/,
    );
    if (process.getuid?.() !== 0) {
      const ro = join(dir, "ro");
      mkdirSync(ro);
      chmodSync(ro, 0o500);
      expectOneLine(await cats(["calibrate", "--data", data, "--out", join(ro, "T.json")]), 1, /is not writable/);
    }
  });
  it("a calibration whose output cannot be written fails before the model is even loaded", async () => {
    const dir = tempDir("cats-out-");
    mkdirSync(join(dir, "T.json"));
    // This model fails at load (NaN logits in the warm-up): the --out error must come first.
    const broken = copyModel((d) => patchWeights(d, "model.embed_tokens.weight", (w) => w.fill(NaN)));
    const r = await cats(["calibrate", "--model", broken, "--data", join(DATA, "tinystories_calib.txt"), "--out", join(dir, "T.json")]);
    expectOneLine(r, 1, /--out .*T\.json: exists and is a directory/);
  });
  it("bench results reach stdout even when the report files cannot be written", async () => {
    const out = tempDir("cats-b-");
    mkdirSync(join(out, "bench.json"));
    const r = await cats(["bench", "--tokens", "4", "--runs", "1", "--out", out]);
    expectOneLine(r, 1, /bench\.json: cannot write \(EISDIR\)/);
    expect(r.stdout).toMatch(/\| 0% \| 0\.0% \|/);
  });
  it("bad meter constants and malformed lists are bad flags (exit 2)", async () => {
    expectOneLine(await cats(["bench", "--pue", "0"]), 2, /--pue.*expected a PUE in \[1, 10\], got "0"/);
    expectOneLine(await cats(["bench", "--watts-per-core", "-5"]), 2, /--watts-per-core/);
    expectOneLine(await cats(["bench", "--sparsity", "abc"]), 2, /--sparsity.*got "abc"/);
    expectOneLine(await cats(["calibrate", "--data", "x", "--levels", "1.5"]), 2, /--levels/);
    expectOneLine(await cats(["serve", "--port", "99999"]), 2, /--port.*expected a port in \[0, 65535\], got "99999"/);
  });
  it("control characters from a file are escaped, long names bounded, file bytes never quoted", async () => {
    const evil = "model.layers.0.\u001b[31mevil" + "x".repeat(5000);
    const dir = copyModel((d) => {
      const { header, data } = splitSafetensors(readFileSync(join(d, "model.safetensors")));
      const extra = new Uint8Array(4);
      const all = new Uint8Array(data.length + 4);
      all.set(data);
      all.set(extra, data.length);
      writeFileSync(
        join(d, "model.safetensors"),
        safetensorsBytes({ ...header, [evil]: { dtype: "F32", shape: [1], data_offsets: [data.length, data.length + 4] } }, all),
      );
    });
    const r = await cats(["generate", "--model", dir, "hi"]);
    expectOneLine(r, 1, /\\x1b\[31mevil/);
    expect(r.errors[0]).not.toContain("\u001b");
    expect(r.errors[0].length).toBeLessThan(700);
    const linked = copyModel((d) => {
      rmSync(join(d, "config.json"));
      writeFileSync(join(d, "secret"), "root:x:0:0:root:/root:/bin/bash\n");
      symlinkSync(join(d, "secret"), join(d, "config.json"));
    });
    const s = await cats(["generate", "--model", linked, "hi"]);
    expectOneLine(s, 1, /config\.json: not valid JSON/);
    expect(s.errors[0]).not.toMatch(/root:x/);
    expect(escapeControl("a\u0007b\u2028")).toBe("a\\x07b\\u2028");
  });
  it("Dawn's adapter warnings are filtered from stderr, partial lines pass at once", () => {
    const out: string[] = [];
    const f = new StderrFilter((t) => out.push(t));
    f.push(
      "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\nWarn",
    );
    f.push(
      "ing: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n",
    );
    f.push("calibrate [====   ] 4/8\r");
    f.push("Warning: something else\n");
    f.end();
    expect(out.join("")).toBe("calibrate [====   ] 4/8\rWarning: something else\n");
  });

  it("drops Dawn's lines that land after a progress bar's redraw, which ends no line", () => {
    const out: string[] = [];
    const f = new StderrFilter((t) => out.push(t));
    const noise =
      "Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n";
    f.push("\x1b[1Gtuning [==  ] 3/16 kernel cases");
    f.push(noise.slice(0, 40));
    f.push(noise.slice(40));
    f.push(`\x1b[1Gtuning [=== ] 4/16 kernel cases${noise}`);
    f.push("\x1b[1Gtuning [====] 16/16 kernel cases | done\n");
    f.end();
    expect(out.join("")).toBe(
      "\x1b[1Gtuning [==  ] 3/16 kernel cases\x1b[1Gtuning [=== ] 4/16 kernel cases\x1b[1Gtuning [====] 16/16 kernel cases | done\n",
    );
  });
});

describe("device loss and out of memory", () => {
  it("a device destroyed mid-generation rejects with one clear error, no hang", async () => {
    const lm = await loadModel(STORIES, { tune: false });
    let n = 0;
    const run = generate(lm.engine, lm.tokenizer.encode("Once upon a time"), {
      maxTokens: 200,
      temperature: 0,
      topK: 0,
      topP: 1,
      seed: 1,
      onToken: () => {
        if (++n === 3) lm.gpu.device.destroy();
      },
    });
    const error = await run.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CatsError);
    expect((error as Error).message).toMatch(/GPU device lost during (decode|prefill) \(destroyed/);
    await lm.close();
  });

  it("a model too big for the adapter is refused before upload, naming both sizes", async () => {
    // A 70B-shaped checkpoint as a sparse file: the header is real, the 140 GB of zeros take no disk.
    const shape = { hidden: 8192, intermediate: 28672, layers: 80, heads: 64, kvHeads: 8, vocab: 32000 };
    const dir = tempDir("cats-huge-");
    const hd = shape.hidden / shape.heads;
    const tensors = [{ name: "model.embed_tokens.weight", dtype: "F16" as const, shape: [shape.vocab, shape.hidden] }];
    for (let i = 0; i < shape.layers; i++) {
      const p = `model.layers.${i}.`;
      tensors.push(
        { name: `${p}input_layernorm.weight`, dtype: "F16", shape: [shape.hidden] },
        { name: `${p}self_attn.q_proj.weight`, dtype: "F16", shape: [shape.hidden, shape.hidden] },
        { name: `${p}self_attn.k_proj.weight`, dtype: "F16", shape: [shape.kvHeads * hd, shape.hidden] },
        { name: `${p}self_attn.v_proj.weight`, dtype: "F16", shape: [shape.kvHeads * hd, shape.hidden] },
        { name: `${p}self_attn.o_proj.weight`, dtype: "F16", shape: [shape.hidden, shape.hidden] },
        { name: `${p}post_attention_layernorm.weight`, dtype: "F16", shape: [shape.hidden] },
        { name: `${p}mlp.gate_proj.weight`, dtype: "F16", shape: [shape.intermediate, shape.hidden] },
        { name: `${p}mlp.up_proj.weight`, dtype: "F16", shape: [shape.intermediate, shape.hidden] },
        { name: `${p}mlp.down_proj.weight`, dtype: "F16", shape: [shape.hidden, shape.intermediate] },
      );
    }
    tensors.push(
      { name: "model.norm.weight", dtype: "F16", shape: [shape.hidden] },
      { name: "lm_head.weight", dtype: "F16", shape: [shape.vocab, shape.hidden] },
    );
    const head = safetensorsHeader(tensors);
    const dataBytes = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * 2, 0);
    writeFileSync(join(dir, "model.safetensors"), head);
    truncateSync(join(dir, "model.safetensors"), head.length + dataBytes);
    const cfg = readJson(join(MODELS, "tiny-llama-f16", "config.json"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        ...cfg,
        hidden_size: shape.hidden,
        intermediate_size: shape.intermediate,
        num_hidden_layers: shape.layers,
        num_attention_heads: shape.heads,
        num_key_value_heads: shape.kvHeads,
        head_dim: hd,
        vocab_size: shape.vocab,
        max_position_embeddings: 4096,
        tie_word_embeddings: false,
      }),
    );
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(MODELS, "llama2-tokenizer", f), join(dir, f));
    expectOneLine(
      await cats(["generate", "--model", dir, "hi"]),
      1,
      /the model needs 1\d\d\.\d GB \(weights 1\d\d\.\d GB, KV cache .*\) but this CPU adapter has \d+\.\d GB/,
    );
  });

  it("a model that fits alone but not beside the models already loaded (cats bench --compare) is refused, naming them", async () => {
    // Memory the models loaded before it hold (bench-compare.ts passes their weights and KV caches).
    const alongside = totalmem();
    const error = await loadModel(join(MODELS, "stories260K"), { alongsideBytes: alongside }).then(
      async (lm) => (await lm.close(), null),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CatsError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `the model needs 0\\.\\d GB .*, beside ${(alongside / 1e9).toFixed(1).replace(".", "\\.")} GB of models already loaded, but this CPU adapter has`,
      ),
    );
  });
});
