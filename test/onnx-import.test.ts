import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import onnxProto from "onnx-proto";
import { modelFingerprint } from "../src/cats/thresholds.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { directoryFiles } from "../src/model/nodefiles.js";
import { loadModel, type LoadedModel } from "../src/node.js";
import { cats, DATA, maxAbsDiff, MODELS, reference, tempDir, topK } from "./helpers.js";

const { onnx } = onnxProto;
type Model = ReturnType<typeof onnx.ModelProto.decode>;
type Run = Awaited<ReturnType<typeof cats>>;

const ONNX_DIR = join(MODELS, "stories260K-onnx");
const MODEL_FILE = join(ONNX_DIR, "onnx", "model.onnx");
/** The stories260K logits tolerance of test/reference.test.ts: the ONNX file holds the same f32 weights. */
const TOL = 1e-3;

const decode = (): Model => onnx.ModelProto.decode(readFileSync(MODEL_FILE));

/** A copy of stories260K-onnx whose onnx/ folder holds what `write` puts there. */
function onnxCopy(write: (onnxDir: string) => void): string {
  const dir = tempDir("cats-onnx-import-");
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"])
    copyFileSync(join(ONNX_DIR, f), join(dir, f));
  mkdirSync(join(dir, "onnx"));
  write(join(dir, "onnx"));
  return dir;
}

/** A copy whose model.onnx is the real one changed by `patch`, which may also write files beside it. */
function mutated(patch: (m: Model, onnxDir: string) => void): string {
  return onnxCopy((d) => {
    const m = decode();
    patch(m, d);
    writeFileSync(join(d, "model.onnx"), onnx.ModelProto.encode(m).finish());
  });
}

function expectOneLine(r: Run, message: RegExp): void {
  expect(r.errors, r.errors.join("\n")).toHaveLength(1);
  expect(r.errors[0]).toMatch(/^cats: /);
  expect(r.errors[0]).toMatch(message);
  expect(r.errors[0]).not.toMatch(/\bat .*\.js:\d+/);
  expect(r.status).toBe(1);
}

const initializer = (m: Model, name: string) => m.graph!.initializer!.find((t) => t.name === name)!;
const nodeOf = (m: Model, output: string) => m.graph!.node!.find((n) => n.output?.includes(output))!;
/** The embedding table: the data of the Gather that reads input_ids. */
const embedName = (m: Model): string => m.graph!.node!.find((n) => n.opType === "Gather" && n.input?.[1] === "input_ids")!.input![0];

/** Moves an initializer's bytes to `file` at `offset` (the file is written unless `writeFile` is false). */
function externalize(m: Model, d: string, name: string, o: { offset?: number; length?: number; writeFile?: boolean } = {}): void {
  const t = initializer(m, name);
  const bytes = t.rawData!;
  const offset = o.offset ?? 0;
  if (o.writeFile !== false) {
    const data = new Uint8Array(offset + bytes.byteLength);
    data.set(bytes, offset);
    writeFileSync(join(d, "model.onnx_data"), data);
  }
  t.rawData = new Uint8Array(0);
  t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  t.externalData = [
    { key: "location", value: "model.onnx_data" },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(o.length ?? bytes.byteLength) },
  ];
}

const generateArgs = (dir: string) => [
  "generate",
  "--model",
  dir,
  "--temperature",
  "0",
  "--max-tokens",
  "32",
  "--json",
  "Once upon a time",
];

describe("stories260K as an ONNX decoder", () => {
  const ref = reference("stories260K");

  it("cats generate gives the reference's 32 greedy ids", async () => {
    const r = await cats(generateArgs(ONNX_DIR));
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(JSON.parse(r.stdout).ids).toEqual(ref.greedy_new_ids);
  });

  describe("logits at the prompt positions", () => {
    let lm: LoadedModel;
    let logits: Float32Array[];
    beforeAll(async () => {
      lm = await loadModel(ONNX_DIR, { flavour: "cpu" });
      logits = await lm.engine.allLogits(ref.prompt_ids);
    });
    afterAll(async () => lm.close());

    it("match reference.json's top-5 ids and logits, and all of position 0", () => {
      for (const p of [...ref.logits_first_positions, ref.logits_last_prompt_position]) {
        expect(topK(logits[p.position], 5)).toEqual(p.top5_ids);
        expect(
          maxAbsDiff(
            p.top5_ids.map((i) => logits[p.position][i]),
            p.top5_logits,
          ),
        ).toBeLessThan(TOL);
      }
      expect(maxAbsDiff(logits[0], ref.logits_full_first_position)).toBeLessThan(TOL);
    });

    it("maps the tied lm_head onto the embedding", () => {
      expect(lm.checkpoint.config.tieWordEmbeddings).toBe(true);
      expect(lm.checkpoint.tensors.has("lm_head.weight")).toBe(false);
      expect(lm.checkpoint.tensors.get("model.layers.0.self_attn.k_proj.weight")!.shape).toEqual([32, 64]);
      expect(lm.checkpoint.tensors.get("model.layers.4.mlp.down_proj.weight")!.shape).toEqual([64, 172]);
    });
  });

  it("cats info --model describes it", async () => {
    const r = await cats(["info", "--model", ONNX_DIR, "--json"]);
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(r.stdout).toMatch(/"num_hidden_layers"|"layers"/);
  });

  it("cats eval gives the perplexity of the same weights as safetensors", async () => {
    const evalArgs = (dir: string) => [
      "eval",
      "--model",
      dir,
      "--data",
      join(DATA, "tinystories_valid_head.txt"),
      "--max-tokens",
      "1024",
      "--json",
    ];
    const [a, b] = [await cats(evalArgs(ONNX_DIR)), await cats(evalArgs(join(MODELS, "stories260K")))];
    expect(a.status, a.errors.join("\n")).toBe(0);
    const [pa, pb] = [JSON.parse(a.stdout), JSON.parse(b.stdout)];
    expect(pa.tokens).toBe(pb.tokens);
    expect(Math.abs(pa.perplexity / pb.perplexity - 1)).toBeLessThan(1e-4);
  });

  it("reads other spellings: external data, a Transpose in front of MatMul, eps from a Constant node", async () => {
    const dir = mutated((m, d) => {
      externalize(m, d, embedName(m));
      // q_proj of the first layer stored [out, in] behind a Transpose node, as some exporters write it.
      const q = m.graph!.node!.find((n) => n.opType === "MatMul" && initializer(m, n.input![1])?.dims?.length === 2)!;
      const w = initializer(m, q.input![1]);
      const [rows, cols] = w.dims!.map(Number);
      const from = new Float32Array(new Uint8Array(w.rawData!).buffer);
      const to = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
      w.rawData = new Uint8Array(to.buffer);
      w.dims = [cols, rows];
      m.graph!.node!.unshift({
        opType: "Transpose",
        input: [w.name!],
        output: ["q0_t"],
        attribute: [{ name: "perm", type: 7, ints: [1, 0] }],
      });
      q.input![1] = "q0_t";
      const add = m.graph!.node!.find((n) => n.opType === "Add" && nodeOf(m, n.input![0])?.opType === "ReduceMean")!;
      const eps = initializer(m, add.input![1]);
      m.graph!.initializer = m.graph!.initializer!.filter((t) => t !== eps);
      m.graph!.node!.unshift({ opType: "Constant", output: [eps.name!], attribute: [{ name: "value", type: 4, t: eps }] });
    });
    const r = await cats(generateArgs(dir));
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(JSON.parse(r.stdout).ids).toEqual(ref.greedy_new_ids);
  });
});

/** float32 -> float16 bits, round to nearest even (Node 20 has no Math.f16round). */
function f16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const e = ((u >>> 23) & 0xff) - 127 + 15;
  const m = u & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  const mant = e <= 0 ? m | 0x800000 : m;
  const shift = e <= 0 ? 14 - e : 13;
  if (shift > 24) return sign;
  let h = sign | (e <= 0 ? 0 : e << 10) | (mant >>> shift);
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && h & 1)) h++;
  return h;
}

describe("the tensors found are the safetensors checkpoint's, name for name and byte for byte", () => {
  async function tensorsOf(dir: string): Promise<Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>> {
    const ckpt = await openCheckpoint(directoryFiles(dir));
    try {
      const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
      for (const [name, t] of ckpt.tensors) out.set(name, { dtype: t.dtype, shape: t.shape, bytes: await ckpt.read(name) });
      return out;
    } finally {
      await ckpt.close();
    }
  }
  const expectSame = async (onnxDir: string, safetensorsDir: string) => {
    const [a, b] = [await tensorsOf(onnxDir), await tensorsOf(safetensorsDir)];
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [name, t] of b) {
      expect(a.get(name)!.dtype, name).toBe(t.dtype);
      expect(a.get(name)!.shape, name).toEqual(t.shape);
      expect(Buffer.from(a.get(name)!.bytes).equals(Buffer.from(t.bytes)), name).toBe(true);
    }
  };

  it("float32 (and float_data instead of raw_data)", async () => {
    await expectSame(ONNX_DIR, join(MODELS, "stories260K"));
    const dir = mutated((m) => {
      const t = initializer(m, embedName(m));
      t.floatData = [...new Float32Array(new Uint8Array(t.rawData!).buffer)];
      t.rawData = new Uint8Array(0);
    });
    await expectSame(dir, join(MODELS, "stories260K"));
  });

  it("float16 as raw_data and as int32_data", async () => {
    const dir = mutated((m) => {
      for (const [i, t] of m.graph!.initializer!.entries()) {
        if (t.dataType !== onnx.TensorProto.DataType.FLOAT || (t.dims ?? []).length === 0) continue;
        const bits = [...new Float32Array(new Uint8Array(t.rawData!).buffer)].map(f16Bits);
        t.dataType = onnx.TensorProto.DataType.FLOAT16;
        if (i % 2 === 0) {
          t.rawData = new Uint8Array(new Uint16Array(bits).buffer);
        } else {
          t.rawData = new Uint8Array(0);
          t.int32Data = bits;
        }
      }
    });
    await expectSame(dir, join(MODELS, "stories260K-fp16"));
  });
});

describe("lm_head", () => {
  const lmHead = (m: Model) => m.graph!.node!.find((n) => n.output?.includes("logits"))!;

  it("tied in the graph (MatMul by a Transpose of the embedding table) generates the reference ids", async () => {
    const dir = mutated((m) => {
      const head = lmHead(m);
      m.graph!.initializer = m.graph!.initializer!.filter((t) => t.name !== head.input![1]);
      m.graph!.node!.unshift({
        opType: "Transpose",
        input: [embedName(m)],
        output: ["embed_t"],
        attribute: [{ name: "perm", type: 7, ints: [1, 0] }],
      });
      head.input![1] = "embed_t";
    });
    const r = await cats(generateArgs(dir));
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(JSON.parse(r.stdout).ids).toEqual(reference("stories260K").greedy_new_ids);
  });

  it("its own initializer, not a copy of the embedding, is used even where config.json says tied", async () => {
    const dir = mutated((m) => {
      const t = initializer(m, lmHead(m).input![1]);
      const values = new Float32Array(new Uint8Array(t.rawData!).buffer);
      values[5] += 0.5;
      t.rawData = new Uint8Array(values.buffer);
    });
    const ckpt = await openCheckpoint(directoryFiles(dir));
    try {
      expect(ckpt.config.tieWordEmbeddings).toBe(false);
      const head = new Float32Array((await ckpt.read("lm_head.weight")).slice().buffer);
      const embed = new Float32Array((await ckpt.read("model.embed_tokens.weight")).slice().buffer);
      // [in, out] element (0, 5) is [out, in] element (5, 0).
      expect(head[5 * 64]).toBeCloseTo(embed[5 * 64] + 0.5, 5);
    } finally {
      await ckpt.close();
    }
  });

  it("multiplied by the untransposed embedding table is refused", async () => {
    const dir = mutated((m) => {
      const head = lmHead(m);
      m.graph!.initializer = m.graph!.initializer!.filter((t) => t.name !== head.input![1]);
      head.input![1] = embedName(m);
    });
    expectOneLine(
      await cats(["info", "--model", dir]),
      /lm_head multiplies by the \[vocab, hidden\] embedding table without transposing it/,
    );
  });
});

describe("projection spellings", () => {
  /** The MatMuls by a 2-D initializer, in graph order: per layer q, k, v, o, gate, up, down. */
  const projections = (m: Model) =>
    m.graph!.node!.filter((n) => n.opType === "MatMul" && (initializer(m, n.input![1])?.dims ?? []).length === 2);

  it("Gemm with transB and an [out, in] weight generates the reference ids", async () => {
    const dir = mutated((m) => {
      const down = projections(m)[13];
      const w = initializer(m, down.input![1]);
      const [rows, cols] = w.dims!.map(Number);
      const from = new Float32Array(new Uint8Array(w.rawData!).buffer);
      const to = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
      w.rawData = new Uint8Array(to.buffer);
      w.dims = [cols, rows];
      down.opType = "Gemm";
      down.attribute = [{ name: "transB", type: 2, i: 1 }];
    });
    const r = await cats(generateArgs(dir));
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(JSON.parse(r.stdout).ids).toEqual(reference("stories260K").greedy_new_ids);
  });

  it("a bias after a projection is refused, not ignored", async () => {
    const dir = mutated((m) => {
      const q = projections(m)[0];
      const out = q.output![0];
      q.output![0] = "q_nobias";
      m.graph!.initializer!.push({ name: "q_bias", dataType: 1, dims: [64], rawData: new Uint8Array(256) });
      m.graph!.node!.push({ opType: "Add", input: ["q_nobias", "q_bias"], output: [out] });
    });
    expectOneLine(await cats(["info", "--model", dir]), /MatMul "q_nobias" is followed by a bias Add \(biases are not supported\)/);
  });
});

describe("an ONNX decoder without a KV cache", () => {
  it("tells q, k and v apart by the attention they feed and generates the same ids", async () => {
    // present.{i}.* stop being graph outputs: the Concats stay, as in a graph that attends over its inputs only.
    const dir = mutated((m) => {
      m.graph!.output = m.graph!.output!.filter((o) => o.name === "logits");
    });
    const r = await cats(generateArgs(dir));
    expect(r.status, r.errors.join("\n")).toBe(0);
    expect(JSON.parse(r.stdout).ids).toEqual(reference("stories260K").greedy_new_ids);
  });
});

describe("the model fingerprint of an ONNX directory", () => {
  const fingerprint = async (dir: string): Promise<string> => {
    const ckpt = await openCheckpoint(directoryFiles(dir));
    try {
      return await modelFingerprint(ckpt);
    } finally {
      await ckpt.close();
    }
  };

  it("is stable, differs from the safetensors copy, and changes with one weight or the external data", async () => {
    const fp = await fingerprint(ONNX_DIR);
    expect(fp).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await fingerprint(ONNX_DIR)).toBe(fp);
    expect(await fingerprint(join(MODELS, "stories260K"))).not.toBe(fp);
    const changed = mutated((m) => {
      const t = initializer(m, embedName(m));
      t.rawData = new Uint8Array(t.rawData!);
      t.rawData[0] ^= 1;
    });
    expect(await fingerprint(changed)).not.toBe(fp);
    const external = mutated((m, d) => externalize(m, d, embedName(m)));
    const externalChanged = mutated((m, d) => {
      externalize(m, d, embedName(m));
      const path = join(d, "model.onnx_data");
      const data = new Uint8Array(readFileSync(path));
      data[data.length - 1] ^= 1;
      writeFileSync(path, data);
    });
    expect(await fingerprint(external)).not.toBe(await fingerprint(externalChanged));
  });
});

describe("hostile ONNX files get one clear line and exit 1", () => {
  const info = (dir: string) => cats(["info", "--model", dir]);

  it("a truncated protobuf", async () => {
    const dir = onnxCopy((d) => writeFileSync(join(d, "model.onnx"), readFileSync(MODEL_FILE).subarray(0, 700_001)));
    expectOneLine(await info(dir), /model\.onnx: (not a valid ONNX protobuf \(truncated or corrupt|no ONNX graph)/);
  });

  it("external data out of range", async () => {
    const dir = mutated((m, d) => {
      externalize(m, d, embedName(m));
      initializer(m, embedName(m)).externalData![1].value = "100";
    });
    expectOneLine(
      await info(dir),
      /model\.onnx: initializer "onnx::Gather_\d+": external data bytes 100\.\.\d+ lie outside .*model\.onnx_data/,
    );
  });

  it("an external data file that is missing", async () => {
    const dir = mutated((m, d) => externalize(m, d, embedName(m), { writeFile: false }));
    expectOneLine(await info(dir), /external data file .*model\.onnx_data not found/);
  });

  it("an external data location outside the model directory", async () => {
    const dir = mutated((m, d) => {
      externalize(m, d, embedName(m));
      initializer(m, embedName(m)).externalData![0].value = "../config.json";
    });
    expectOneLine(await info(dir), /external data location "\.\.\/config\.json": expected a file name in the same directory/);
  });

  it("an initializer whose bytes do not match its shape", async () => {
    const dir = mutated((m) => {
      const t = m.graph!.initializer!.find((x) => x.dims?.length === 2 && x.dataType === 1)!;
      t.rawData = t.rawData!.subarray(0, t.rawData!.byteLength - 4);
    });
    expectOneLine(await info(dir), /raw_data holds \d+ bytes but shape \[\d+, \d+\] needs \d+/);
  });

  it("a contrib op", async () => {
    const dir = mutated((m) => {
      const softmax = m.graph!.node!.find((n) => n.opType === "Softmax")!;
      softmax.opType = "GroupQueryAttention";
      softmax.domain = "com.microsoft";
    });
    expectOneLine(
      await info(dir),
      /model\.onnx: op com\.microsoft\.GroupQueryAttention is not supported; expected a Llama decoder of standard ONNX ops/,
    );
  });

  it("a standard op where the Llama pattern needs another (LayerNormalization for RMSNorm's Div)", async () => {
    const dir = mutated((m) => {
      const div = m.graph!.node!.find((n) => n.opType === "Div")!;
      div.opType = "LayerNormalization";
    });
    expectOneLine(await info(dir), /model\.onnx: no RMSNorm .*expected a Llama decoder of standard ONNX ops/);
  });

  it("a graph with a cycle", async () => {
    const dir = mutated((m) => {
      const nodes = m.graph!.node!;
      nodes.find((n) => n.opType === "Div")!.input![0] = nodes[nodes.length - 1].output![0];
    });
    expectOneLine(await info(dir), /model\.onnx: the graph has a cycle/);
  });

  it("a config.json that disagrees with the graph", async () => {
    const dir = onnxCopy((d) => copyFileSync(MODEL_FILE, join(d, "model.onnx")));
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, intermediate_size: 176 }));
    expectOneLine(await info(dir), /the graph has intermediate_size 172, but .*config\.json says 176/);
  });
});
