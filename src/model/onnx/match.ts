import { CatsError } from "../../errors.js";
import { attr, intsAttr, type OnnxGraph } from "./graph.js";
import { int64, type OnnxNode, type OnnxTensor } from "./proto.js";
import { shapeOf } from "./tensors.js";

/** A weight found in the graph: `inOut` when stored [in, out] as MatMul reads it, so it must be transposed to HF's [out, in]. */
export interface MatchedWeight {
  tensor: OnnxTensor;
  inOut: boolean;
}

export interface MatchedDecoder {
  /** HF tensor name -> initializer. */
  weights: Map<string, MatchedWeight>;
  numLayers: number;
  /** The eps constants the RMSNorms add, for a check against config.json. */
  eps: OnnxTensor[];
  /** lm_head reads the embedding table itself. */
  tiedInGraph: boolean;
}

const PASS_THROUGH = new Set(["Reshape", "Identity", "Cast", "Flatten", "Squeeze", "Unsqueeze"]);
const NORM_OPS = new Set(["Pow", "Mul", "ReduceMean", "Add", "Sqrt", "Div", "Reciprocal", "Cast"]);
const PRESENT = /^present[._](?:key_values[._])?(\d+)[._](key|value)$/;

class Matcher {
  readonly weights = new Map<string, MatchedWeight>();
  readonly eps: OnnxTensor[] = [];

  constructor(readonly g: OnnxGraph) {}

  fail(what: string): never {
    throw new CatsError(`${this.g.file}: ${what}; expected a Llama decoder of standard ONNX ops`);
  }

  uses(value: string): OnnxNode[] {
    return this.g.consumers.get(value) ?? [];
  }

  /** The constant weight of a MatMul or Gemm: [in, out] as stored, or [out, in] behind a Transpose or Gemm's transB. */
  weightOf(node: OnnxNode): MatchedWeight | null {
    if (node.opType !== "MatMul" && node.opType !== "Gemm") return null;
    const w = node.input?.[1] ?? "";
    let transB = false;
    if (node.opType === "Gemm") {
      if ((node.input ?? []).length > 2 && node.input![2] !== "")
        this.fail(`Gemm ${JSON.stringify(node.output?.[0])} adds a bias (biases are not supported)`);
      if (int64(attr(node, "transA")?.i) !== 0) return null;
      transB = int64(attr(node, "transB")?.i) !== 0;
    }
    const direct = this.g.constant(w);
    if (direct) return shapeOf(direct).length === 2 ? { tensor: direct, inOut: !transB } : null;
    const t = this.g.producer.get(w);
    if (t?.opType !== "Transpose") return null;
    const perm = intsAttr(t, "perm");
    if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return null;
    const inner = this.g.constant(t.input?.[0] ?? "");
    if (!inner || shapeOf(inner).length !== 2) return null;
    return { tensor: inner, inOut: transB };
  }

  /** The weight MatMuls that read `value`, looking through reshapes that exporters insert for Gemm. */
  projectionsOf(value: string): OnnxNode[] {
    const out: OnnxNode[] = [];
    const seen = new Set<string>();
    const walk = (v: string): void => {
      if (seen.has(v)) return;
      seen.add(v);
      for (const n of this.uses(v)) {
        if (n.input?.[0] === v && this.weightOf(n)) out.push(n);
        else if (PASS_THROUGH.has(n.opType ?? "") && n.input?.[0] === v) walk(n.output?.[0] ?? "");
      }
    };
    walk(value);
    return out;
  }

  /** The value after reshapes a projection's result goes through; a bias Add there is refused. */
  resultOf(n: OnnxNode): string {
    let v = n.output?.[0] ?? "";
    for (let hops = 0; hops < 8; hops++) {
      const users = this.uses(v);
      const bias = users.find((u) => u.opType === "Add" && (u.input ?? []).some((i) => i !== v && this.g.constant(i)));
      if (bias) this.fail(`${n.opType} ${JSON.stringify(n.output?.[0])} is followed by a bias Add (biases are not supported)`);
      if (users.length === 1 && PASS_THROUGH.has(users[0].opType ?? "")) v = users[0].output?.[0] ?? "";
      else break;
    }
    return v;
  }

  /** The projection whose result, added to the residual `h`, gives the next residual. */
  residualAdd(h: string, what: string): { proj: OnnxNode; out: string } {
    for (const n of this.uses(h)) {
      if (n.opType !== "Add") continue;
      const other = n.input?.[0] === h ? n.input?.[1] : n.input?.[0];
      let p = this.g.producer.get(other ?? "");
      for (let hops = 0; p && PASS_THROUGH.has(p.opType ?? "") && hops < 8; hops++) p = this.g.producer.get(p.input?.[0] ?? "");
      if (p && this.weightOf(p)) return { proj: p, out: n.output?.[0] ?? "" };
    }
    this.fail(`no ${what} (a MatMul by a weight added to the residual stream ${JSON.stringify(h)})`);
  }

  /** RMSNorm of `x` (x / sqrt(mean(x^2) + eps) * gain, in any of the usual spellings): the gain Mul's output. */
  rmsNorm(x: string, hidden: number, name: string): string {
    const queue = [x];
    const seen = new Set([x]);
    while (queue.length > 0) {
      const v = queue.shift()!;
      for (const n of this.uses(v)) {
        const op = n.opType ?? "";
        if (!NORM_OPS.has(op)) continue;
        const ins = n.input ?? [];
        const consts = ins.map((i) => this.g.constant(i));
        if (op === "Add") {
          // eps; the residual Add has no constant operand and ends the norm.
          const c = consts.find((t) => t !== null);
          if (!c) continue;
          this.eps.push(c);
        }
        if (op === "Mul" && v !== x) {
          const gain = consts.find((t) => t !== null && shapeOf(t).length === 1 && shapeOf(t)[0] === hidden);
          if (gain) {
            this.weights.set(name, { tensor: gain, inOut: false });
            return n.output?.[0] ?? "";
          }
        }
        const o = n.output?.[0] ?? "";
        if (!seen.has(o)) {
          seen.add(o);
          queue.push(o);
        }
      }
      if (seen.size > 64) break;
    }
    const ops = this.uses(x)
      .map((n) => n.opType)
      .join(", ");
    this.fail(`no RMSNorm with a gain of size ${hidden} for ${name} after ${JSON.stringify(x)} (found ${ops || "nothing"})`);
  }

  /** The present.{i}.key/value outputs a value flows into without passing another weight MatMul or attention's score MatMul. */
  presentReached(value: string): { layer: number; kind: string }[] {
    const hits: { layer: number; kind: string }[] = [];
    const seen = new Set<string>();
    const queue = [value];
    while (queue.length > 0 && seen.size < 256) {
      const v = queue.shift()!;
      if (seen.has(v)) continue;
      seen.add(v);
      const m = PRESENT.exec(v);
      if (m && this.g.outputs.has(v)) hits.push({ layer: Number(m[1]), kind: m[2] });
      for (const n of this.uses(v)) {
        if (n.opType === "MatMul" || n.opType === "Gemm" || n.opType === "Softmax") continue;
        for (const o of n.output ?? []) queue.push(o);
      }
    }
    return hits;
  }

  setProj(name: string, n: OnnxNode): void {
    this.resultOf(n);
    this.weights.set(name, this.weightOf(n)!);
  }
}

/** q, k, v by the KV cache outputs they flow into: k into present.{layer}.key, v into present.{layer}.value, q into neither. */
function byPresent(m: Matcher, projs: OnnxNode[], layer: number): [OnnxNode, OnnxNode, OnnxNode] {
  const roles = projs.map((n) => ({ n, hits: m.presentReached(n.output?.[0] ?? "") }));
  const byKind = (kind: string) => roles.filter((r) => r.hits.some((h) => h.kind === kind));
  const k = byKind("key");
  const v = byKind("value");
  const q = roles.filter((r) => r.hits.length === 0);
  if (k.length !== 1 || v.length !== 1 || q.length !== 1 || k[0] === v[0]) {
    m.fail(
      `layer ${layer}: cannot tell q, k and v apart (expected exactly one projection flowing into each of present.${layer}.key and present.${layer}.value, and one into neither)`,
    );
  }
  for (const r of [...k, ...v]) {
    if (r.hits.some((hit) => hit.layer !== layer))
      m.fail(`layer ${layer} (counting from the input) writes present.${r.hits[0].layer}.${r.hits[0].kind}; layers out of order`);
  }
  return [q[0].n, k[0].n, v[0].n];
}

/**
 * A graph without a KV cache has no present outputs: q and k meet in the score MatMul (q on the
 * left, k transposed on the right) whose result goes to the Softmax; v is the right operand of the
 * MatMul that reads the Softmax's probabilities.
 */
function byAttention(m: Matcher, projs: OnnxNode[], layer: number): [OnnxNode, OnnxNode, OnnxNode] {
  const reaches = (from: string, op: string, forward: boolean): boolean => {
    const seen = new Set<string>();
    const queue: [string, number][] = [[from, 0]];
    while (queue.length > 0) {
      const [val, depth] = queue.shift()!;
      if (seen.has(val) || depth > 12) continue;
      seen.add(val);
      const next = forward ? m.uses(val) : [m.g.producer.get(val)].filter((n): n is OnnxNode => n !== undefined);
      for (const n of next) {
        if (n.opType === op) return true;
        if (n.opType === "MatMul" || n.opType === "Gemm") continue;
        for (const o of (forward ? n.output : n.input) ?? []) queue.push([o, depth + 1]);
      }
    }
    return false;
  };
  const role = (proj: OnnxNode): "q" | "k" | "v" | null => {
    const seen = new Set<string>();
    const queue = [proj.output?.[0] ?? ""];
    while (queue.length > 0 && seen.size < 256) {
      const val = queue.shift()!;
      if (seen.has(val)) continue;
      seen.add(val);
      for (const n of m.uses(val)) {
        if (n.opType === "MatMul") {
          const side = n.input?.[0] === val ? 0 : 1;
          const other = n.input?.[1 - side] ?? "";
          if (m.g.constant(other)) continue;
          if (reaches(n.output?.[0] ?? "", "Softmax", true)) return side === 0 ? "q" : "k";
          if (side === 1 && reaches(other, "Softmax", false)) return "v";
          continue;
        }
        if (n.opType === "Gemm" || n.opType === "Softmax") continue;
        for (const o of n.output ?? []) queue.push(o);
      }
    }
    return null;
  };
  const roles = projs.map(role);
  const pick = (r: "q" | "k" | "v"): OnnxNode => {
    const found = projs.filter((_, i) => roles[i] === r);
    if (found.length !== 1)
      m.fail(`layer ${layer}: cannot tell q, k and v apart by the attention they feed (found ${found.length} ${r} projections)`);
    return found[0];
  };
  return [pick("q"), pick("k"), pick("v")];
}

const outWidth = (w: MatchedWeight): number => shapeOf(w.tensor)[w.inOut ? 1 : 0];

/**
 * Finds the Llama weights by following the data from the input_ids Gather through each layer's
 * norms, projections and residual adds to the MatMul that produces logits. Names and the order of
 * initializers carry no meaning in exported graphs, so only the structure is trusted.
 */
export function matchLlamaDecoder(g: OnnxGraph): MatchedDecoder {
  const m: Matcher = new Matcher(g);
  const gather = g.nodes.find((n) => n.opType === "Gather" && n.input?.[1] === "input_ids" && g.constant(n.input?.[0] ?? ""));
  if (!gather) m.fail(`no Gather of "input_ids" from an embedding table`);
  const embed = g.constant(gather.input![0])!;
  const [vocab, hidden] = shapeOf(embed);
  if (shapeOf(embed).length !== 2) m.fail(`the embedding table is [${shapeOf(embed).join(", ")}], expected [vocab, hidden]`);
  m.weights.set("model.embed_tokens.weight", { tensor: embed, inOut: false });
  let h = gather.output?.[0] ?? "";
  let tiedInGraph = false;
  const hasPresent = [...g.outputs].some((o) => PRESENT.test(o));
  for (let layer = 0; ; layer++) {
    const normName = `model.layers.${layer}.input_layernorm.weight`;
    const normed = m.rmsNorm(h, hidden, normName);
    const projs = m.projectionsOf(normed);
    if (projs.length === 1) {
      // The final norm and lm_head: the layer loop ends here.
      const gain = m.weights.get(normName)!;
      m.weights.delete(normName);
      m.weights.set("model.norm.weight", gain);
      const out = m.resultOf(projs[0]);
      if (!g.outputs.has(out) || out !== "logits")
        m.fail(`the MatMul after the final norm produces ${JSON.stringify(out)}, not the graph output "logits" (a fused projection?)`);
      const w = m.weightOf(projs[0])!;
      tiedInGraph = w.tensor === embed;
      if (tiedInGraph && w.inOut) m.fail(`lm_head multiplies by the [vocab, hidden] embedding table without transposing it`);
      // A tied lm_head reads the [vocab, hidden] table through a Transpose, i.e. [out, in] already.
      m.weights.set("lm_head.weight", tiedInGraph ? { tensor: embed, inOut: false } : w);
      if (!tiedInGraph && outWidth(w) !== vocab) m.fail(`lm_head has ${outWidth(w)} outputs but the embedding table ${vocab} rows`);
      return { weights: m.weights, numLayers: layer, eps: m.eps, tiedInGraph };
    }
    if (projs.length !== 3) {
      m.fail(
        `layer ${layer}: ${projs.length} weight MatMuls read the attention norm's output, expected q, k and v (3)${projs.length === 1 ? "" : " or lm_head (1)"}`,
      );
    }
    const p = `model.layers.${layer}.`;
    const [q, k, v] = hasPresent ? byPresent(m, projs, layer) : byAttention(m, projs, layer);
    m.setProj(`${p}self_attn.q_proj.weight`, q);
    m.setProj(`${p}self_attn.k_proj.weight`, k);
    m.setProj(`${p}self_attn.v_proj.weight`, v);
    const attn = m.residualAdd(h, `layer ${layer} o_proj`);
    if (projs.includes(attn.proj)) m.fail(`layer ${layer}: a q/k/v projection is added to the residual directly`);
    m.setProj(`${p}self_attn.o_proj.weight`, attn.proj);
    h = attn.out;
    const normed2 = m.rmsNorm(h, hidden, `${p}post_attention_layernorm.weight`);
    const mlp = m.projectionsOf(normed2);
    if (mlp.length !== 2) m.fail(`layer ${layer}: ${mlp.length} weight MatMuls read the MLP norm's output, expected gate and up (2)`);
    const activated = (n: OnnxNode): boolean => m.uses(m.resultOf(n)).some((u) => u.opType === "Sigmoid");
    const gate = mlp.filter(activated);
    if (gate.length !== 1)
      m.fail(`layer ${layer}: expected exactly one of the two MLP projections to feed a Sigmoid (SiLU gate), found ${gate.length}`);
    const up = mlp.find((n) => n !== gate[0])!;
    if (!m.uses(m.resultOf(up)).some((u) => u.opType === "Mul")) m.fail(`layer ${layer}: the up projection is not multiplied by the gate`);
    m.setProj(`${p}mlp.gate_proj.weight`, gate[0]);
    m.setProj(`${p}mlp.up_proj.weight`, up);
    const down = m.residualAdd(h, `layer ${layer} down_proj`);
    m.setProj(`${p}mlp.down_proj.weight`, down.proj);
    h = down.out;
    if (layer > 4096) m.fail("more than 4096 layers");
  }
}
