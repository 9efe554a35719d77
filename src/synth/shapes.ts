/** Real model shapes for synthetic checkpoints: speed and energy at real sizes, never quality. */
export interface SynthShape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  context: number;
  /** Which real model the shape is taken from. */
  like: string;
}

export const SYNTH_SHAPES: Record<string, SynthShape> = {
  "llama-110m": {
    hidden: 768,
    intermediate: 2048,
    layers: 12,
    heads: 12,
    kvHeads: 12,
    vocab: 32000,
    context: 1024,
    like: "llama2.c stories110M (Llama 2 architecture, 110M parameters)",
  },
  "llama2-7b-2l": {
    hidden: 4096,
    intermediate: 11008,
    layers: 2,
    heads: 32,
    kvHeads: 32,
    vocab: 32000,
    context: 4096,
    like: "Llama 2 7B, first 2 of 32 layers",
  },
  // Small enough for CI: exercises the Llama 2 tokenizer and a 32000-token vocabulary quickly.
  "tiny-test": {
    hidden: 64,
    intermediate: 176,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    vocab: 32000,
    context: 256,
    like: "nothing: a test shape",
  },
};
