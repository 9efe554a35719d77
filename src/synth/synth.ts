import { writeStreamAtomic } from "../files.js";
import { seededRandom } from "../engine/sampling.js";
import { floatToHalf } from "../model/dtype.js";
import type { TensorDtype } from "../model/safetensors.js";
import { safetensorsHeader } from "../model/safetensors-writer.js";
import type { SynthShape } from "./shapes.js";

interface TensorPlan {
  name: string;
  shape: number[];
  /** Uniform in [-a, a] with a = sqrt(3) * std; or a constant (norm gains). */
  std: number | null;
  constant?: number;
}

/**
 * The tensors of a Llama checkpoint and their scales: projections have std 1/sqrt(fan_in), so every
 * gate activation is about N(0, 1) after RMSNorm, and |SiLU(gate)| has a real spread of quantiles.
 */
export function tensorPlan(s: SynthShape): TensorPlan[] {
  const hd = s.hidden / s.heads;
  const plan: TensorPlan[] = [{ name: "model.embed_tokens.weight", shape: [s.vocab, s.hidden], std: 1 }];
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}.`;
    plan.push(
      { name: `${p}input_layernorm.weight`, shape: [s.hidden], std: null, constant: 1 },
      { name: `${p}self_attn.q_proj.weight`, shape: [s.heads * hd, s.hidden], std: 1 / Math.sqrt(s.hidden) },
      { name: `${p}self_attn.k_proj.weight`, shape: [s.kvHeads * hd, s.hidden], std: 1 / Math.sqrt(s.hidden) },
      { name: `${p}self_attn.v_proj.weight`, shape: [s.kvHeads * hd, s.hidden], std: 1 / Math.sqrt(s.hidden) },
      { name: `${p}self_attn.o_proj.weight`, shape: [s.hidden, s.heads * hd], std: 1 / Math.sqrt(s.heads * hd) },
      { name: `${p}post_attention_layernorm.weight`, shape: [s.hidden], std: null, constant: 1 },
      { name: `${p}mlp.gate_proj.weight`, shape: [s.intermediate, s.hidden], std: 1 / Math.sqrt(s.hidden) },
      { name: `${p}mlp.up_proj.weight`, shape: [s.intermediate, s.hidden], std: 1 / Math.sqrt(s.hidden) },
      { name: `${p}mlp.down_proj.weight`, shape: [s.hidden, s.intermediate], std: 1 / Math.sqrt(s.intermediate) },
    );
  }
  plan.push({ name: "model.norm.weight", shape: [s.hidden], std: null, constant: 1 });
  plan.push({ name: "lm_head.weight", shape: [s.vocab, s.hidden], std: 1 / Math.sqrt(s.hidden) });
  return plan;
}

function generate(t: TensorPlan, dtype: TensorDtype, random: () => number): Uint8Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const a = t.std === null ? 0 : Math.sqrt(3) * t.std;
  const value = () => (t.std === null ? t.constant! : (random() * 2 - 1) * a);
  if (dtype === "F32") {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = value();
    return new Uint8Array(out.buffer);
  }
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = floatToHalf(value());
  return new Uint8Array(out.buffer);
}

export function synthConfig(name: string, s: SynthShape): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.hidden / s.heads,
    vocab_size: s.vocab,
    max_position_embeddings: s.context,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    cats_synthetic: true,
    cats_synthetic_note: `SYNTHETIC checkpoint of shape "${name}" (${s.like}), random weights from cats synth: it measures speed and energy, never quality`,
  };
}

/**
 * Writes model.safetensors tensor by tensor (one tensor in memory at a time), deterministic for a
 * seed: the same shape, dtype and seed give the same bytes.
 */
export async function writeSynthWeights(
  path: string,
  s: SynthShape,
  dtype: TensorDtype,
  seed: number,
  onTensor?: (done: number, total: number) => void,
): Promise<void> {
  const plan = tensorPlan(s);
  // Written beside and renamed into place: an interrupted synth never leaves a truncated checkpoint.
  await writeStreamAtomic(path, async (handle) => {
    await handle.write(
      safetensorsHeader(
        plan.map((t) => ({ name: t.name, dtype, shape: t.shape })),
        { format: "pt", cats_synthetic: "true" },
      ),
    );
    const random = seededRandom(seed);
    for (const [i, t] of plan.entries()) {
      await handle.write(generate(t, dtype, random));
      onTensor?.(i + 1, plan.length);
    }
  });
}
