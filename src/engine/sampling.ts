import { CatsError } from "../errors.js";

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

/** Each band of the sorted order spans a factor of 2^BAND_BITS in weight. */
const BAND_BITS = 4;
/** Weights below 2^-(BAND_BITS * (BANDS - 1)) share the last band. */
const BANDS = 40;
/** Ids below 2^ID_BITS fit beside a 32-bit logit key in a float64's 53-bit integer range. */
const ID_BITS = 21;

/**
 * The tokens in order of falling logit (ties to the lower id), produced a band at a time: a
 * sampled token almost always comes from the few tokens near the top, so sorting the whole
 * vocabulary (about 10 ms for 32,000 ids with a comparator in JavaScript, more than a decode step)
 * is wasted work. One pass puts the ids in bands by weight exp((logit - max) / T); a band is sorted
 * only when the order reaches it, as float64 keys (logit order, then id) by the native sort.
 */
class SortedPrefix {
  readonly order: number[] = [];
  /** The ids, band after band (a counting sort by band); band b is ids[start[b] .. start[b + 1]). */
  private readonly ids: Uint32Array;
  private readonly start = new Uint32Array(BANDS + 1);
  private readonly bits: Uint32Array;
  private next = 0;

  constructor(logits: Float32Array, maxLogit: number, temperature: number) {
    // -log2(weight) / BAND_BITS, from the logit without a logarithm per token.
    const perBand = temperature * Math.LN2 * BAND_BITS;
    const bandOf = new Uint8Array(logits.length);
    for (let i = 0; i < logits.length; i++) {
      const band = Math.floor((maxLogit - logits[i]) / perBand);
      bandOf[i] = band < BANDS - 1 ? band : BANDS - 1;
      this.start[bandOf[i] + 1]++;
    }
    for (let b = 0; b < BANDS; b++) this.start[b + 1] += this.start[b];
    const fill = this.start.slice(0, BANDS);
    this.ids = new Uint32Array(logits.length);
    for (let i = 0; i < logits.length; i++) this.ids[fill[bandOf[i]]++] = i;
    this.bits = new Uint32Array(logits.buffer, logits.byteOffset, logits.length);
  }

  /** Extends `order` by the next non-empty band; false when every token is already in it. */
  private grow(): boolean {
    while (this.next < BANDS) {
      const b = this.next++;
      const n = this.start[b + 1] - this.start[b];
      if (n === 0) continue;
      const keys = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        const id = this.ids[this.start[b] + j];
        keys[j] = fallingKey(this.bits[id]) * 2 ** ID_BITS + id;
      }
      keys.sort();
      for (let j = 0; j < n; j++) this.order.push(keys[j] % 2 ** ID_BITS);
      return true;
    }
    return false;
  }

  /** The i-th token of the sorted order (growing it as needed), or -1 past the last. */
  at(i: number): number {
    while (i >= this.order.length) if (!this.grow()) return -1;
    return this.order[i];
  }
}

/** A key that rises as the float32 with these bits falls (-0 as +0, so that they tie). */
function fallingKey(bits: number): number {
  const u = bits === 0x80000000 ? 0 : bits;
  const rising = u & 0x80000000 ? ~u >>> 0 : (u | 0x80000000) >>> 0;
  return 0xffffffff - rising;
}

/**
 * Draws a token from logits with temperature, then top-k, then top-p (nucleus), as HF's generate
 * does: the candidates are the top-k ids by logit (all without top-k; ties to the lower id), each
 * weighted by exp((logit - max) / T); their total weight is summed in id order; the nucleus is the
 * shortest run of them, in order of falling logit, whose share of that total reaches top-p; a
 * uniform draw in [0, 1) times the nucleus's weight picks from it by cumulative weight in that
 * order. Only as much of the order as the draw needs is sorted.
 */
export function sampleToken(logits: Float32Array, o: SamplingOptions, random: () => number): number {
  if (isGreedy(o)) return argmax(logits);
  if (logits.length > 2 ** ID_BITS) {
    throw new CatsError(`sampling: a vocabulary of ${logits.length} ids, over the ${2 ** ID_BITS} this sampler can order`);
  }
  const maxLogit = logits[argmax(logits)];
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    weights[i] = Math.exp((logits[i] - maxLogit) / o.temperature);
    total += weights[i];
  }
  const sorted = new SortedPrefix(logits, maxLogit, o.temperature);
  let count = logits.length;
  if (o.topK > 0 && o.topK < logits.length) {
    count = o.topK;
    sorted.at(count - 1);
    total = 0;
    for (const id of Uint32Array.from(sorted.order.slice(0, count)).sort()) total += weights[id];
  }
  let mass = total;
  if (o.topP < 1) {
    let cum = 0;
    mass = 0;
    for (let i = 0; i < count; i++) {
      const w = weights[sorted.at(i)];
      cum += w / total;
      mass += w;
      if (cum >= o.topP) {
        count = i + 1;
        break;
      }
    }
  }
  let r = random() * mass;
  for (let i = 0; i < count; i++) {
    const id = sorted.at(i);
    r -= weights[id];
    if (r < 0) return id;
  }
  return sorted.at(count - 1);
}
