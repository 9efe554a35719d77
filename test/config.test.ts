import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseLlamaConfig } from "../src/model/config.js";
import { MODELS } from "./helpers.js";

const base = JSON.parse(readFileSync(join(MODELS, "stories260K", "config.json"), "utf8")) as Record<string, unknown>;
const parse = (patch: Record<string, unknown>) => parseLlamaConfig({ ...base, ...patch }, "config.json");

describe("config.json", () => {
  it("reads the stories260K config", () => {
    const c = parse({});
    expect(c).toMatchObject({
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      tieWordEmbeddings: true,
      bosTokenId: 1,
      eosTokenIds: [2],
    });
  });

  it("derives head_dim from hidden_size / heads when absent", () => {
    expect(parse({ head_dim: undefined }).headDim).toBe(8);
  });

  const refused: [string, Record<string, unknown>, RegExp][] = [
    [
      "another architecture",
      { architectures: ["GPT2LMHeadModel"] },
      /field "architectures": expected one of LlamaForCausalLM, MistralForCausalLM/,
    ],
    ["rope scaling", { rope_scaling: { type: "linear", factor: 2 } }, /field "rope_scaling": expected null/],
    ["attention bias", { attention_bias: true }, /field "attention_bias": expected false/],
    ["another activation", { hidden_act: "gelu" }, /field "hidden_act": expected "silu"/],
    ["a missing size", { hidden_size: undefined }, /field "hidden_size": expected a positive integer up to \d+, got missing/],
    [
      "2^53 layers (no loop or buffer may be sized by it)",
      { num_hidden_layers: 2 ** 53 },
      /field "num_hidden_layers": expected a positive integer up to 4096, got 9007199254740992/,
    ],
    [
      "an AWQ checkpoint",
      { quantization_config: { quant_method: "awq", bits: 4 } },
      /field "quantization_config.quant_method": expected "gptq" \(AWQ, bitsandbytes and other methods are not supported\), got "awq"/,
    ],
    ["3-bit GPTQ", { quantization_config: { quant_method: "gptq", bits: 3 } }, /field "quantization_config.bits": expected 4 or 8, got 3/],
    [
      "a group that is not whole blocks of 8",
      { quantization_config: { quant_method: "gptq", bits: 4, group_size: 20 } },
      /field "quantization_config.group_size": expected -1 \(one group per row\) or a positive multiple of 8, got 20/,
    ],
    [
      "an unknown checkpoint format",
      { quantization_config: { quant_method: "gptq", bits: 4, checkpoint_format: "marlin" } },
      /field "quantization_config.checkpoint_format": expected one of "gptq", "gptq_v2", "cats", got "marlin"/,
    ],
    ["kv heads not dividing heads", { num_key_value_heads: 3 }, /field "num_key_value_heads": expected a divisor/],
    ["an unsupported head_dim", { head_dim: 6 }, /field "head_dim": expected a multiple of 4/],
    ["sliding-window attention", { sliding_window: 128 }, /field "sliding_window"/],
  ];
  for (const [what, patch, message] of refused) {
    it(`refuses ${what}`, () => {
      expect(() => parse(patch)).toThrow(message);
    });
  }
});
