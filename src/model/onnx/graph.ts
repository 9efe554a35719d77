import { CatsError } from "../../errors.js";
import { int64, type OnnxAttribute, type OnnxModel, type OnnxNode, type OnnxTensor } from "./proto.js";

/** The data-flow view of a graph that the matcher walks: who produces and who consumes each value, and which values are constants. */
export interface OnnxGraph {
  file: string;
  nodes: OnnxNode[];
  producer: Map<string, OnnxNode>;
  consumers: Map<string, OnnxNode[]>;
  /** Initializers and Constant node outputs, seen through Identity nodes. */
  constant(value: string): OnnxTensor | null;
  outputs: Set<string>;
  inputs: Set<string>;
}

const STANDARD_DOMAINS = new Set(["", "ai.onnx"]);

export function attr(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function intsAttr(node: OnnxNode, name: string): number[] | null {
  const a = attr(node, name);
  return a ? (a.ints ?? []).map(int64) : null;
}

/** A Constant node's value as a TensorProto (value, or the scalar/list forms). */
function constantValue(node: OnnxNode): OnnxTensor | null {
  const v = attr(node, "value");
  if (v?.t) return v.t;
  const f = attr(node, "value_float");
  if (f) return { dataType: 1, dims: [], floatData: [f.f ?? 0] };
  const fs = attr(node, "value_floats");
  if (fs) return { dataType: 1, dims: [(fs.floats ?? []).length], floatData: fs.floats ?? [] };
  return null;
}

export function buildGraph(model: OnnxModel, file: string): OnnxGraph {
  const g = model.graph!;
  const nodes = g.node ?? [];
  for (const n of nodes) {
    if (!STANDARD_DOMAINS.has(n.domain ?? "")) {
      throw new CatsError(`${file}: op ${n.domain}.${n.opType} is not supported; expected a Llama decoder of standard ONNX ops`);
    }
  }
  const constants = new Map<string, OnnxTensor>();
  for (const t of g.initializer ?? []) constants.set(t.name ?? "", t);
  const producer = new Map<string, OnnxNode>();
  const consumers = new Map<string, OnnxNode[]>();
  for (const n of nodes) {
    for (const o of n.output ?? []) {
      if (o === "") continue;
      if (producer.has(o) || constants.has(o))
        throw new CatsError(`${file}: value ${JSON.stringify(o)} is produced twice (not a valid ONNX graph)`);
      producer.set(o, n);
    }
    if (n.opType === "Constant") {
      const v = constantValue(n);
      if (v && n.output?.[0]) constants.set(n.output[0], v);
    }
    for (const i of n.input ?? []) if (i !== "") consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  checkAcyclic(nodes, producer, file);
  const constant = (value: string): OnnxTensor | null => {
    for (let v = value, hops = 0; hops < 16; hops++) {
      const c = constants.get(v);
      if (c) return c;
      const p = producer.get(v);
      // f16 exports (cats' own, transformers.js-style) Cast their f16 weights to f32 before use: the
      // values are the f16 initializer's, which the engine reads as f16.
      if (
        p?.opType !== "Identity" &&
        !(p?.opType === "Cast" && [1, 10].includes(Number(p.attribute?.find((a) => a.name === "to")?.i ?? 0)))
      )
        return null;
      v = p.input?.[0] ?? "";
    }
    return null;
  };
  return {
    file,
    nodes,
    producer,
    consumers,
    constant,
    outputs: new Set((g.output ?? []).map((o) => o.name ?? "")),
    inputs: new Set((g.input ?? []).map((o) => o.name ?? "")),
  };
}

/** Kahn's algorithm: the matcher walks data flow, so a cycle is refused before it can be followed forever. */
function checkAcyclic(nodes: OnnxNode[], producer: Map<string, OnnxNode>, file: string): void {
  const pending = new Map<OnnxNode, number>();
  const users = new Map<OnnxNode, OnnxNode[]>();
  for (const n of nodes) {
    const deps = new Set((n.input ?? []).map((i) => producer.get(i)).filter((p): p is OnnxNode => p !== undefined));
    pending.set(n, deps.size);
    for (const d of deps) users.set(d, [...(users.get(d) ?? []), n]);
  }
  const ready = nodes.filter((n) => pending.get(n) === 0);
  let done = 0;
  while (ready.length > 0) {
    const n = ready.pop()!;
    done++;
    for (const u of users.get(n) ?? []) {
      const left = pending.get(u)! - 1;
      pending.set(u, left);
      if (left === 0) ready.push(u);
    }
  }
  if (done !== nodes.length) {
    const stuck = nodes.find((n) => pending.get(n)! > 0)!;
    throw new CatsError(
      `${file}: the graph has a cycle (${nodes.length - done} nodes, e.g. ${stuck.opType} ${JSON.stringify(stuck.name || stuck.output?.[0] || "")}, depend on their own outputs); not a valid ONNX graph`,
    );
  }
}
