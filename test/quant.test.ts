/**
 * Quantized checkpoints end to end: the independent GPTQ fixture against its float64 reference,
 * `cats quantize` against AutoGPTQ's arithmetic (the fixture's hand example and a bit-for-bit round
 * trip), perplexities of quantized stories260K against a float64 evaluation of the same
 * dequantized weights, and broken quantized files refused with one line each.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { loadModel } from "../src/node.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";
import { directoryFiles } from "../src/model/nodefiles.js";
import { packGptq } from "../src/quant/gptq-pack.js";
import { quantizeRtn } from "../src/quant/rtn.js";
import { dequantize } from "../src/model/gptq.js";
import { encodeSafetensors, type TensorData } from "../src/model/safetensors-writer.js";
import { cats, copyModel, DATA, maxAbsDiff, MODELS, safetensorsBytes, splitSafetensors, tempDir } from "./helpers.js";
import { referenceIntermediates } from "./llama-reference.js";

const GPTQ = join(MODELS, "tiny-llama-gptq4");
const ref = JSON.parse(readFileSync(join(GPTQ, "reference.json"), "utf8")) as {
  prompt: string;
  prompt_ids: number[];
  logits_all_prompt_positions: number[][];
  greedy_new_ids: number[];
};

let gpu: GpuContext;
beforeAll(async () => {
  gpu = await createGpu();
});
afterAll(() => gpu.destroy());

describe("a GPTQ checkpoint made by an independent tool (tiny-llama-gptq4)", () => {
  it("cats generate returns reference.json's 32 greedy ids", async () => {
    const r = await cats(["generate", "--model", GPTQ, "--temperature", "0", "--max-tokens", "32", "--json", ref.prompt]);
    expect(r.errors).toEqual([]);
    expect(JSON.parse(r.stdout).ids).toEqual(ref.greedy_new_ids);
  });

  for (const flavour of ["cpu", "gpu"] as const) {
    it(`logits at every prompt position within 2e-3 of the float64 reference (${flavour} kernels)`, async () => {
      const lm = await loadModel(GPTQ, { flavour, gpu: { ...gpu, flavour } });
      const logits = await lm.engine.allLogits(ref.prompt_ids);
      await lm.close();
      logits.forEach((row, p) => expect(maxAbsDiff(row, ref.logits_all_prompt_positions[p]), `position ${p}`).toBeLessThan(2e-3));
    });
  }

  it("gives the same logits, bit for bit, with q/k/v, o and gate in row blocks (q4bg64) and W_down^T in column slices (q4sg64) as row after row", async () => {
    const rows = await loadModel(GPTQ, { gpu, rowBlocks: false });
    const blocks = await loadModel(GPTQ, { gpu, rowBlocks: true });
    const l = blocks.engine.weights.layers[0];
    expect([l.qkv.format, l.o.format, l.gate.format, l.up.format, l.downT.format]).toEqual([
      "q4bg64",
      "q4bg64",
      "q4bg64",
      "q4g64",
      "q4sg64",
    ]);
    expect(rows.engine.weights.layers[0].qkv.format).toBe("q4g64");
    const [a, b] = [await rows.engine.allLogits(ref.prompt_ids), await blocks.engine.allLogits(ref.prompt_ids)];
    a.forEach((row, p) => expect(maxAbsDiff(row, b[p]), `position ${p}`).toBe(0));
    b.forEach((row, p) => expect(maxAbsDiff(row, ref.logits_all_prompt_positions[p]), `position ${p}`).toBeLessThan(2e-3));
    await rows.close();
    await blocks.close();
  });
});

describe("cats quantize follows AutoGPTQ's arithmetic", () => {
  it("the fixture README's hand example: codes, packed words, dequantized values", () => {
    const w = Float32Array.from([-7.5, -3, -0.5, 0, 1, 2.5, 3.5, 7.5]);
    const m = quantizeRtn(w, 1, 8, 4, 8, true);
    expect([...m.codes]).toEqual([0, 5, 8, 8, 9, 10, 12, 15]);
    expect([...dequantize(m)]).toEqual([-8, -3, 0, 0, 1, 2, 4, 7]);
    // One row of 8 inputs: qweight is one word; qzeros packs 8 outputs, so this row's zero sits in the low nibble.
    const parts = packGptq("p", m, "gptq");
    const word = (name: string) => new Int32Array(parts.find((t) => t.name === `p.${name}`)!.data.slice().buffer)[0];
    expect(word("qweight")).toBe(-55998384); // 0xFCA98850
    expect(word("qzeros") & 0xf).toBe(7); // zero 8, stored as zero - 1
  });

  it("tiny-llama-f16 at --bits 4 --group 64 --sym gives tiny-llama-gptq4's tensors bit for bit", async () => {
    const out = tempDir("cats-quantize-");
    const r = await cats(["quantize", "--model", join(MODELS, "tiny-llama-f16"), "--bits", "4", "--group", "64", "--sym", "--out", out]);
    expect(r.status, r.errors.join("\n")).toBe(0);
    const mine = splitSafetensors(readFileSync(join(out, "model.safetensors")));
    const theirs = splitSafetensors(readFileSync(join(GPTQ, "model.safetensors")));
    const names = Object.keys(theirs.header).filter((n) => n !== "__metadata__");
    expect(
      Object.keys(mine.header)
        .filter((n) => n !== "__metadata__")
        .sort(),
    ).toEqual(names.sort());
    const bytes = (p: typeof mine, n: string) => {
      const t = p.header[n] as { dtype: string; shape: number[]; data_offsets: [number, number] };
      return { dtype: t.dtype, shape: t.shape, data: Buffer.from(p.data.subarray(t.data_offsets[0], t.data_offsets[1])).toString("hex") };
    };
    for (const n of names) expect(bytes(mine, n), n).toEqual(bytes(theirs, n));
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(config.quantization_config).toMatchObject({
      quant_method: "gptq",
      bits: 4,
      group_size: 64,
      sym: true,
      checkpoint_format: "gptq",
    });
  });
});

describe("quantized stories260K: perplexity against float64 on the same dequantized weights", () => {
  const text = readFileSync(join(DATA, "tinystories_heldout.txt"), "utf8").replace(/\r\n?/g, "\n");
  const TOKENS = 511; // one window of BOS + 511

  /** Perplexity of the first TOKENS predicted tokens by a float64 forward pass (ref_llama.py's windows). */
  async function float64Perplexity(dir: string): Promise<number> {
    // The tokenizer alone: loading the model onto the GPU would only cost time here.
    const ckpt = await openCheckpoint(directoryFiles(dir));
    const tokenizer = await TextTokenizer.load(directoryFiles(dir), ckpt.config);
    await ckpt.close();
    const ids = tokenizer.encode(text.trim(), false);
    const bos = 1;
    let nll = 0;
    let n = 0;
    for (let s = 0; n < TOKENS; s += 511) {
      const window = [bos, ...ids.slice(s, s + 511)];
      const logits = (await referenceIntermediates(dir, window)).get("lm_head")!;
      for (let t = 0; t + 1 < window.length; t++) {
        const row = logits[t];
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
        nll += lse - row[window[t + 1]];
        n++;
      }
    }
    return Math.exp(nll / n);
  }

  const evalPerplexity = async (dir: string): Promise<number> => {
    const r = await cats([
      "eval",
      "--model",
      dir,
      "--data",
      join(DATA, "tinystories_heldout.txt"),
      "--max-tokens",
      String(TOKENS),
      "--json",
    ]);
    expect(r.errors).toEqual([]);
    const out = JSON.parse(r.stdout) as { perplexity: number; tokens: number };
    expect(out.tokens).toBe(TOKENS);
    return out.perplexity;
  };

  let fp32: number;
  beforeAll(async () => {
    fp32 = await evalPerplexity(join(MODELS, "stories260K"));
  });

  for (const [what, flags] of [
    ["q8 per-row", ["--bits", "8", "--group", "row"]],
    ["q4 g32 sym", ["--bits", "4", "--group", "32", "--sym"]],
    ["q4 g32 asym", ["--bits", "4", "--group", "32", "--asym"]],
  ] as const) {
    it(`${what}: cats eval within 0.5% of float64${what.startsWith("q8") ? ", and within 1% of fp32" : ""}`, async () => {
      const out = tempDir("cats-quantize-");
      const q = await cats(["quantize", "--model", join(MODELS, "stories260K"), ...flags, "--out", out]);
      expect(q.status, q.errors.join("\n")).toBe(0);
      const got = await evalPerplexity(out);
      const want = await float64Perplexity(out);
      expect(Math.abs(got / want - 1), `cats ${got} vs float64 ${want}`).toBeLessThan(0.005);
      if (what.startsWith("q8")) expect(Math.abs(got / fp32 - 1), `q8 ${got} vs fp32 ${fp32}`).toBeLessThan(0.01);
      // Quantization must change the model (a loader that ignored the codes would still pass the checks above).
      expect(Math.abs(got - fp32)).toBeGreaterThan(1e-4);
    });
  }

  it("q8 per-row with --lm-head on a tied model: the embedding is quantized (cats' format), within 0.5% of float64 and 1% of fp32", async () => {
    const out = tempDir("cats-quantize-");
    const q = await cats(["quantize", "--model", join(MODELS, "stories260K"), "--bits", "8", "--group", "row", "--lm-head", "--out", out]);
    expect(q.status, q.errors.join("\n")).toBe(0);
    const ckpt = await openCheckpoint(directoryFiles(out));
    expect(ckpt.tensors.has("model.embed_tokens.qweight")).toBe(true);
    expect(ckpt.tensors.has("model.embed_tokens.weight")).toBe(false);
    expect(ckpt.config.quantization?.format).toBe("cats");
    await ckpt.close();
    const info = await cats(["info", "--model", out]);
    expect(info.stdout).toMatch(/q8 per-row sym \(cats\) projections and the embedding \(tied lm_head\), F32 elsewhere/);
    const got = await evalPerplexity(out);
    const want = await float64Perplexity(out);
    expect(Math.abs(got / want - 1), `cats ${got} vs float64 ${want}`).toBeLessThan(0.005);
    expect(Math.abs(got / fp32 - 1), `q8 ${got} vs fp32 ${fp32}`).toBeLessThan(0.01);
  });
});

describe("broken quantized checkpoints get one clear line", () => {
  /** A copy of tiny-llama-gptq4 with its config and tensors changed. */
  function gptqCopy(patch: { config?: (c: Record<string, unknown>) => void; tensors?: (p: ReturnType<typeof splitSafetensors>) => void }) {
    const dir = tempDir("cats-gptq-");
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(GPTQ, f), join(dir, f));
    const config = JSON.parse(readFileSync(join(GPTQ, "config.json"), "utf8"));
    patch.config?.(config);
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    const parts = splitSafetensors(readFileSync(join(GPTQ, "model.safetensors")));
    patch.tensors?.(parts);
    writeFileSync(join(dir, "model.safetensors"), safetensorsBytes(parts.header, parts.data));
    return dir;
  }
  type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };
  const q = (c: Record<string, unknown>) => c.quantization_config as Record<string, unknown>;

  const cases: [string, Parameters<typeof gptqCopy>[0], RegExp][] = [
    [
      "qweight shape not matching config.json",
      { config: (c) => (c.intermediate_size = 392) },
      /tensor "model\.layers\.0\.mlp\.gate_proj\.qweight": field "shape": expected \[16,392\] for a 392 x 128 Linear at 4 bits, group 64, got \[16,384\]/,
    ],
    [
      "scales missing",
      {
        tensors: (p) => {
          // Cut the tensor's bytes out too, so the data section stays tiled.
          const t = p.header["model.layers.1.mlp.up_proj.scales"] as Entry;
          const [b, e] = t.data_offsets;
          delete p.header["model.layers.1.mlp.up_proj.scales"];
          for (const [n, v] of Object.entries(p.header)) {
            if (n === "__metadata__") continue;
            const o = (v as Entry).data_offsets;
            if (o[0] >= e) (v as Entry).data_offsets = [o[0] - (e - b), o[1] - (e - b)];
          }
          p.data = Uint8Array.from([...p.data.subarray(0, b), ...p.data.subarray(e)]);
        },
      },
      /tensor "model\.layers\.1\.mlp\.up_proj\.scales" is missing \(a GPTQ Linear needs qweight, qzeros and scales\)/,
    ],
    ["bits 3", { config: (c) => (q(c).bits = 3) }, /field "quantization_config\.bits": expected 4 or 8, got 3/],
    [
      "a group that does not divide the stored groups",
      { config: (c) => (q(c).group_size = 48) },
      /q_proj\.qzeros": field "shape": expected \[3,16\] for a 128 x 128 Linear at 4 bits, group 48, got \[2,16\]/,
    ],
    ["an AWQ checkpoint", { config: (c) => (q(c).quant_method = "awq") }, /quant_method": expected "gptq" \(AWQ/],
    [
      "activation order with permuted groups",
      {
        config: (c) => (q(c).desc_act = true),
        tensors: (p) => {
          const t = p.header["model.layers.0.self_attn.q_proj.g_idx"] as Entry;
          const g = new Int32Array(p.data.buffer, p.data.byteOffset + t.data_offsets[0], 128);
          [g[0], g[127]] = [g[127], g[0]];
        },
      },
      /g_idx": input 0 is in group 1, expected 0; activation-order \(desc_act\) checkpoints with permuted groups are not supported/,
    ],
    [
      "qweight stored as F32",
      {
        tensors: (p) => {
          (p.header["model.layers.0.mlp.down_proj.qweight"] as Entry).dtype = "F32";
        },
      },
      /down_proj\.qweight": field "dtype": expected I32, got F32/,
    ],
  ];
  for (const [what, patch, message] of cases) {
    it(what, async () => {
      const r = await cats(["generate", "--model", gptqCopy(patch), "--max-tokens", "2", "hi"]);
      expect(r.status).toBe(1);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatch(/^cats: /);
      expect(r.errors[0]).toMatch(message);
    });
  }

  /** tiny-llama-gptq4 with one layer-0 projection stored as a float weight instead of GPTQ tensors. */
  function floatProjection(module: string, shape: [number, number]): Parameters<typeof gptqCopy>[0] {
    return {
      tensors: (p) => {
        const prefix = `model.layers.0.${module}`;
        const kept = Object.entries(p.header).filter(([n]) => n !== "__metadata__" && !n.startsWith(`${prefix}.`)) as [string, Entry][];
        const tensors: TensorData[] = kept.map(([name, t]) => ({
          name,
          dtype: t.dtype as TensorData["dtype"],
          shape: t.shape,
          data: p.data.slice(t.data_offsets[0], t.data_offsets[1]),
        }));
        tensors.push({ name: `${prefix}.weight`, dtype: "F16", shape, data: new Uint8Array(shape[0] * shape[1] * 2) });
        const rebuilt = splitSafetensors(encodeSafetensors(tensors, { format: "pt" }));
        p.header = rebuilt.header;
        p.data = rebuilt.data;
      },
    };
  }

  it("q, k and v not all quantized (they are stacked into one matrix)", async () => {
    const r = await cats(["generate", "--model", gptqCopy(floatProjection("self_attn.k_proj", [64, 128])), "--max-tokens", "2", "hi"]);
    expect(r.status).toBe(1);
    expect(r.errors).toEqual([
      expect.stringMatching(
        /^cats: .*layer 0 qkv: model\.layers\.0\.self_attn\.q_proj, model\.layers\.0\.self_attn\.v_proj quantized but not model\.layers\.0\.self_attn\.k_proj; stacked projections must share one format$/,
      ),
    ]);
  });

  it("gate quantized and up not (one kernel reads both)", async () => {
    const r = await cats(["generate", "--model", gptqCopy(floatProjection("mlp.up_proj", [384, 128])), "--max-tokens", "2", "hi"]);
    expect(r.status).toBe(1);
    expect(r.errors).toEqual([expect.stringMatching(/^cats: .*layer 0: gate_proj and up_proj must be both quantized or both float$/)]);
  });

  it("an I32 tensor where a float weight belongs is refused by name", async () => {
    const dir = copyModel((d) => {
      const p = splitSafetensors(readFileSync(join(d, "model.safetensors")));
      (p.header["model.norm.weight"] as Entry).dtype = "I32";
      writeFileSync(join(d, "model.safetensors"), safetensorsBytes(p.header, p.data));
    });
    const r = await cats(["generate", "--model", dir, "--max-tokens", "2", "hi"]);
    expect(r.status).toBe(1);
    expect(r.errors).toEqual([expect.stringMatching(/tensor "model\.norm\.weight": field "dtype": expected F32, F16 or BF16, got I32$/)]);
  });

  it("quantizing a quantized checkpoint is refused before anything is written", async () => {
    const out = tempDir("cats-quantize-");
    const r = await cats(["quantize", "--model", GPTQ, "--bits", "8", "--out", out]);
    expect(r.status).toBe(1);
    expect(r.errors).toEqual([expect.stringMatching(/already quantized \(q4g64 sym \(gptq\)\); quantize the float checkpoint/)]);
  });

  it("bad --bits and --group are flag errors (exit 2)", async () => {
    for (const flags of [
      ["--bits", "3"],
      ["--bits", "4", "--group", "20"],
      ["--bits", "4", "--sym", "--asym"],
    ]) {
      const r = await cats(["quantize", ...flags, "--out", tempDir("cats-quantize-")]);
      expect(r.status, flags.join(" ")).toBe(2);
      expect(r.errors).toHaveLength(1);
    }
  });

  it("cats info states the weight format", async () => {
    const r = await cats(["info", "--model", GPTQ]);
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(r.stdout).toMatch(/q4g64 sym \(gptq\) projections, F16 elsewhere/);
  });

  it("the checkpoint opens with its quantization stated", async () => {
    const ckpt = await openCheckpoint(directoryFiles(GPTQ));
    expect(ckpt.config.quantization).toEqual({ bits: 4, groupSize: 64, sym: true, format: "gptq" });
    await ckpt.close();
  });
});
