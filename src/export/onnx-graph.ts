import onnxProto from "onnx-proto";
import { floatToHalf } from "../model/dtype.js";

// onnx-proto is CommonJS: its namespace comes through the default export under NodeNext.
export const { onnx } = onnxProto;
export type TensorProto = onnxProto.onnx.ITensorProto;

export const F32 = onnx.TensorProto.DataType.FLOAT;
export const F16 = onnx.TensorProto.DataType.FLOAT16;
export const I64 = onnx.TensorProto.DataType.INT64;
export const BOOL = onnx.TensorProto.DataType.BOOL;
export type ElemType = number;

/** Integers are INT attributes; a float attribute is written { float: x } so that 1.0 stays a float. */
export type Attr = number | number[] | string | { float: number };

/** A dimension: a fixed size or a symbolic name (batch_size, past_sequence_length, ...). */
export type Dim = number | string;

/** Where an initializer's bytes go: inside the model file, or at an offset of the external data file. */
export type Placement = { raw: Uint8Array } | { location: string; offset: number; length: number };

/**
 * A small graph builder: every node output gets a fresh name, so the graph reads as straight-line
 * code. Initializers are added with their bytes already placed (inline or external).
 */
export class GraphBuilder {
  readonly nodes: onnxProto.onnx.INodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;
  private readonly constants = new Map<string, string>();

  /** Adds a node; returns its outputs' names (named `outputs` when given, else fresh ones). */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs?: string[] | number): string[] {
    const names =
      typeof outputs === "object" ? outputs : Array.from({ length: outputs ?? 1 }, () => `${opType.toLowerCase()}_${this.counter++}`);
    const attribute = Object.entries(attrs).map(([name, v]) => attribute1(name, v));
    this.nodes.push({ opType, input: inputs, output: names, name: `${opType}_${this.counter++}`, attribute });
    return names;
  }

  /** One-output node. */
  op1(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, output?: string): string {
    return this.op(opType, inputs, attrs, output === undefined ? 1 : [output])[0];
  }

  initializer(name: string, dataType: ElemType, dims: number[], placement: Placement): string {
    const t: TensorProto = { name, dataType, dims };
    if ("raw" in placement) t.rawData = placement.raw;
    else {
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      t.externalData = [
        { key: "location", value: placement.location },
        { key: "offset", value: String(placement.offset) },
        { key: "length", value: String(placement.length) },
      ];
    }
    this.initializers.push(t);
    return name;
  }

  /** An int64 constant (shared by value), for shapes, axes and indices. */
  ints(values: number[], scalar = false): string {
    const key = `i64:${scalar ? "s" : ""}${values.join(",")}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    const name = `const_${this.constants.size}`;
    const raw = new Uint8Array(values.length * 8);
    const view = new DataView(raw.buffer);
    values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
    this.initializer(name, I64, scalar ? [] : [values.length], { raw });
    this.constants.set(key, name);
    return name;
  }

  /** A float scalar constant of the given element type. */
  scalar(value: number, dataType: ElemType = F32): string {
    const key = `f${dataType}:${value}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    const name = `const_${this.constants.size}`;
    let raw: Uint8Array;
    if (dataType === F16) {
      raw = new Uint8Array(2);
      new DataView(raw.buffer).setUint16(0, floatToHalf(value), true);
    } else {
      raw = new Uint8Array(new Float32Array([value]).buffer);
    }
    this.initializer(name, dataType, [], { raw });
    this.constants.set(key, name);
    return name;
  }

  input(name: string, elemType: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: ElemType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** The ModelProto: IR 8, opset 17 (what onnxruntime 1.30 and transformers.js read). */
  model(graphName: string, producerVersion: string): onnxProto.onnx.ModelProto {
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: "cats",
      producerVersion,
      opsetImport: [{ domain: "", version: 17 }],
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }
}

function attribute1(name: string, v: Attr): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === "string") return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (typeof v === "object") return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.INT, i: v };
}

function valueInfo(name: string, elemType: ElemType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) } },
    },
  };
}
