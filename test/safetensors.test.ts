import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { memorySource } from "../src/model/bytesource.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { directoryFiles } from "../src/model/nodefiles.js";
import { fileSource } from "../src/model/nodesource.js";
import { readSafetensorsHeader } from "../src/model/safetensors.js";
import { MODELS, safetensorsBytes, tempDir } from "./helpers.js";

const F = "hostile.safetensors";
const parse = (bytes: Uint8Array) => readSafetensorsHeader(memorySource(F, bytes));
const tensor = (dtype: string, shape: number[], offsets: number[]) => ({ dtype, shape, data_offsets: offsets });

describe("safetensors header validation", () => {
  it("reads a valid file and gives absolute byte ranges", async () => {
    const h = await parse(
      safetensorsBytes(
        { a: tensor("F32", [2, 2], [0, 16]), b: tensor("F16", [4], [16, 24]), __metadata__: { format: "pt" } },
        new Uint8Array(24),
      ),
    );
    const a = h.tensors.get("a")!;
    expect(a.end - a.begin).toBe(16);
    expect(h.tensors.get("b")!.begin).toBe(a.end);
    expect(h.metadata.format).toBe("pt");
  });

  const cases: [string, Uint8Array, RegExp][] = [
    ["a file shorter than the length field", new Uint8Array(5), /hostile\.safetensors: truncated: 5 bytes/],
    [
      "a header claiming 2^63 bytes",
      safetensorsBytes({}, new Uint8Array(0), 2n ** 63n),
      /field "header length": 9223372036854775808 bytes exceeds the 100000000-byte limit/,
    ],
    [
      "a header length past the end of the file",
      safetensorsBytes({}, new Uint8Array(0), 4096n),
      /field "header length": 4096 bytes runs past the end of the file/,
    ],
    ["a header that is not JSON", safetensorsBytes("{not json", new Uint8Array(0)), /header: not valid JSON/],
    ["a header that is a list", safetensorsBytes("[1,2]", new Uint8Array(0)), /header: expected a JSON object/],
    [
      "an unknown dtype",
      safetensorsBytes({ w: tensor("F33", [1], [0, 4]) }, new Uint8Array(4)),
      /tensor "w": field "dtype": "F33" is an unknown dtype/,
    ],
    [
      "a dtype the engine does not support",
      safetensorsBytes({ w: tensor("I64", [1], [0, 8]) }, new Uint8Array(8)),
      /tensor "w": field "dtype": "I64" is a dtype the engine does not support/,
    ],
    [
      "a bad shape",
      safetensorsBytes({ w: tensor("F32", [-1], [0, 4]) }, new Uint8Array(4)),
      /tensor "w": field "shape": expected a list of non-negative integers/,
    ],
    [
      "shape times dtype size not matching the byte range",
      safetensorsBytes({ w: tensor("F32", [3], [0, 8]) }, new Uint8Array(8)),
      /tensor "w": field "data_offsets": holds 8 bytes but shape \[3\] of F32 needs 12/,
    ],
    [
      "offsets outside the data section",
      safetensorsBytes({ w: tensor("F32", [4], [0, 16]) }, new Uint8Array(8)),
      /tensor "w": field "data_offsets": end 16 lies outside the data section \(8 bytes/,
    ],
    [
      "reversed offsets",
      safetensorsBytes({ w: tensor("F32", [0], [8, 0]) }, new Uint8Array(8)),
      /tensor "w": field "data_offsets": expected \[begin, end\]/,
    ],
    [
      "overlapping tensors",
      safetensorsBytes({ a: tensor("F32", [2], [0, 8]), b: tensor("F32", [2], [4, 12]) }, new Uint8Array(12)),
      /tensor "b": field "data_offsets": overlaps tensor "a"/,
    ],
    [
      "a non-string metadata value",
      safetensorsBytes({ __metadata__: { n: 1 } }, new Uint8Array(0)),
      /field "__metadata__.n": expected a string/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    it(`rejects ${what}`, async () => {
      await expect(parse(bytes)).rejects.toThrow(message);
    });
  }

  it("rejects a real checkpoint cut short, naming the tensor", async () => {
    const dir = tempDir("cats-trunc-");
    const full = readFileSync(join(MODELS, "stories260K", "model.safetensors"));
    writeFileSync(join(dir, "model.safetensors"), full.subarray(0, full.length - 1000));
    const src = await fileSource(join(dir, "model.safetensors"));
    await expect(readSafetensorsHeader(src)).rejects.toThrow(
      /model\.safetensors: tensor "[^"]+": field "data_offsets": end \d+ lies outside the data section/,
    );
    await src.close();
  });

  it("rejects a checkpoint whose tensor shape disagrees with config.json when the engine asks for it", async () => {
    const dir = tempDir("cats-shape-");
    for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"])
      copyFileSync(join(MODELS, "stories260K", f), join(dir, f));
    const cfg = JSON.parse(readFileSync(join(MODELS, "stories260K", "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, intermediate_size: 176 }));
    const ckpt = await openCheckpoint(directoryFiles(dir));
    const { uploadMatrix } = await import("../src/engine/weights.js");
    const fakeDevice = { limits: { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30 } } as unknown as GPUDevice;
    await expect(uploadMatrix(fakeDevice, ckpt, [{ name: "model.layers.0.mlp.gate_proj.weight", rows: 176 }], 64, "g")).rejects.toThrow(
      /tensor "model\.layers\.0\.mlp\.gate_proj\.weight": field "shape": expected \[176,64\] from config\.json, got \[172,64\]/,
    );
    await ckpt.close();
  });

  it("reads sharded checkpoints through model.safetensors.index.json", async () => {
    const dir = tempDir("cats-shard-");
    const [a, b] = ["model.norm.weight", "model.layers.0.input_layernorm.weight"];
    const one = safetensorsBytes({ [a]: tensor("F32", [1], [0, 4]) }, new Uint8Array(new Float32Array([1.5]).buffer));
    const two = safetensorsBytes({ [b]: tensor("F32", [1], [0, 4]) }, new Uint8Array(new Float32Array([2.5]).buffer));
    writeFileSync(join(dir, "model-00001-of-00002.safetensors"), one);
    writeFileSync(join(dir, "model-00002-of-00002.safetensors"), two);
    writeFileSync(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { [a]: "model-00001-of-00002.safetensors", [b]: "model-00002-of-00002.safetensors" } }),
    );
    writeFileSync(join(dir, "config.json"), readFileSync(join(MODELS, "stories260K", "config.json")));
    const ckpt = await openCheckpoint(directoryFiles(dir));
    expect(new Float32Array((await ckpt.read(b)).buffer)[0]).toBe(2.5);
    expect(new Float32Array((await ckpt.read(a)).buffer)[0]).toBe(1.5);
    await ckpt.close();
  });

  it("rejects a shard path that leaves the model directory", async () => {
    const dir = tempDir("cats-shard-");
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../evil.safetensors" } }));
    writeFileSync(join(dir, "config.json"), readFileSync(join(MODELS, "stories260K", "config.json")));
    await expect(openCheckpoint(directoryFiles(dir))).rejects.toThrow(
      /field "weight_map\.a": expected a \.safetensors file name in the same directory/,
    );
  });
});
