import onnxProto from "onnx-proto";
import { CatsError } from "../../errors.js";

/** onnx-proto is CommonJS: Node's ESM loader gives only its default export, so the namespace is taken from that. */
export const onnx = onnxProto.onnx;
export type OnnxModel = import("onnx-proto").onnx.ModelProto;
export type OnnxTensor = import("onnx-proto").onnx.ITensorProto;
export type OnnxNode = import("onnx-proto").onnx.INodeProto;
export type OnnxAttribute = import("onnx-proto").onnx.IAttributeProto;

/** int64 fields decode as numbers or as Long objects depending on the protobuf runtime. */
export function int64(v: number | { toString(): string } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === "number" ? v : Number(v.toString());
}

/** Decodes model.onnx; a truncated or corrupt file names the file instead of throwing protobufjs's RangeError. */
export function decodeOnnxModel(bytes: Uint8Array, file: string): OnnxModel {
  let model: OnnxModel;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new CatsError(`${file}: not a valid ONNX protobuf (truncated or corrupt: ${why})`);
  }
  if (!model.graph || (model.graph.node ?? []).length === 0) {
    throw new CatsError(`${file}: no ONNX graph in the file (truncated, or not an ONNX model?)`);
  }
  return model;
}
