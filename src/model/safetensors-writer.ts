import type { TensorDtype } from "./safetensors.js";

export interface TensorData {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  data: Uint8Array;
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 };

/**
 * The start of a safetensors file for tensors laid out in order: the 8-byte header length and the
 * JSON header padded to a multiple of 8 bytes. The data section follows it.
 */
export function safetensorsHeader(
  tensors: { name: string; dtype: TensorDtype; shape: number[] }[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + jsonBytes.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  out.set(jsonBytes, 8);
  return out;
}

/** Serialises tensors as one safetensors file (header, then the data in order). */
export function encodeSafetensors(tensors: TensorData[], metadata: Record<string, string> = {}): Uint8Array {
  const head = safetensorsHeader(tensors, metadata);
  const out = new Uint8Array(head.length + tensors.reduce((a, t) => a + t.data.byteLength, 0));
  out.set(head);
  let at = head.length;
  for (const t of tensors) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}
