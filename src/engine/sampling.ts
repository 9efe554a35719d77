export interface SamplingOptions {
  /** 0 means greedy. */
  temperature: number;
  /** 0 means no top-k cut. */
  topK: number;
  /** 1 means no nucleus cut. */
  topP: number;
}

/** mulberry32: small, fast, and the same sequence for the same seed on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function isGreedy(o: SamplingOptions): boolean {
  return o.temperature === 0;
}

/** Index of the largest value; ties go to the lowest index, like the GPU argmax. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Draws a token from logits with temperature, then top-k, then top-p (nucleus), as HF's generate does. */
export function sampleToken(logits: Float32Array, o: SamplingOptions, random: () => number): number {
  if (isGreedy(o)) return argmax(logits);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  const kept = o.topK > 0 ? order.slice(0, o.topK) : order;
  const maxLogit = logits[kept[0]];
  const weights = kept.map((i) => Math.exp((logits[i] - maxLogit) / o.temperature));
  const total = weights.reduce((s, w) => s + w, 0);
  let count = weights.length;
  if (o.topP < 1) {
    let cum = 0;
    for (let i = 0; i < weights.length; i++) {
      cum += weights[i] / total;
      if (cum >= o.topP) {
        count = i + 1;
        break;
      }
    }
  }
  const mass = weights.slice(0, count).reduce((s, w) => s + w, 0);
  let r = random() * mass;
  for (let i = 0; i < count; i++) {
    r -= weights[i];
    if (r < 0) return kept[i];
  }
  return kept[count - 1];
}
