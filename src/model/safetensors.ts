import { CatsError } from "../errors.js";
import type { ByteSource } from "./bytesource.js";
import { quoted, shown } from "./describe.js";
import { parseJson } from "./json.js";

export type FloatDtype = "F32" | "F16" | "BF16";
/** I32 holds GPTQ's packed codes, zero points and group indices; weights proper are floats. */
export type TensorDtype = FloatDtype | "I32";

const DTYPE_BYTES: Record<TensorDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 };
/** Dtypes defined by the format that the engine cannot compute with; named so the error can say so. */
const OTHER_DTYPES = ["F64", "I64", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"];
/** A header larger than this is refused before it is read, whatever the file claims. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  /** Byte range inside the file (absolute, header included). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  headerBytes: number;
  /** The header's JSON text as stored: part of the model fingerprint. */
  headerText: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function bad(file: string, what: string): never {
  throw new CatsError(`${file}: ${what}`);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Validates a parsed header against the file size: every tensor's dtype, shape, byte range and
 * overlap. Returns absolute byte ranges so that readers never trust an offset twice.
 */
export function validateHeader(file: string, fileSize: number, headerLength: number, json: unknown, headerText = ""): SafetensorsHeader {
  if (typeof json !== "object" || json === null || Array.isArray(json)) bad(file, "header: expected a JSON object of tensors");
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry))
        bad(file, 'field "__metadata__": expected an object of strings');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string")
          bad(file, `field "__metadata__.${k.length > 40 ? k.slice(0, 40) + "..." : k}": expected a string, got ${shown(v)}`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const where = `tensor ${quoted(name)}`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry))
      bad(file, `${where}: expected an object with dtype, shape, data_offsets`);
    const e = entry as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== "string") bad(file, `${where}: field "dtype": expected a string, got ${shown(dtype)}`);
    if (!(dtype in DTYPE_BYTES)) {
      const known = OTHER_DTYPES.includes(dtype) ? "a dtype the engine does not support" : "an unknown dtype";
      bad(file, `${where}: field "dtype": ${shown(dtype)} is ${known} (expected F32, F16, BF16, or I32 for quantized weights)`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      bad(file, `${where}: field "shape": expected a list of non-negative integers, got ${shown(shape)}`);
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0] > offsets[1]) {
      bad(file, `${where}: field "data_offsets": expected [begin, end] with 0 <= begin <= end, got ${shown(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expectedBytes = elements * DTYPE_BYTES[dtype as TensorDtype];
    if (!Number.isSafeInteger(expectedBytes) || expectedBytes !== end - begin) {
      bad(file, `${where}: field "data_offsets": holds ${end - begin} bytes but shape ${shown(shape)} of ${dtype} needs ${expectedBytes}`);
    }
    if (end > dataSize) {
      bad(
        file,
        `${where}: field "data_offsets": end ${end} lies outside the data section (${Math.max(dataSize, 0)} bytes; file truncated?)`,
      );
    }
    tensors.set(name, { name, dtype: dtype as TensorDtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end });
  }
  // As the reference reader requires: the tensors tile the data section from its first byte to the
  // end of the file, so a length field one short, unrecorded padding or shifted offsets cannot load.
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = dataStart;
  for (const t of sorted) {
    if (t.begin < at) {
      const prev = sorted[sorted.indexOf(t) - 1];
      bad(file, `tensor ${quoted(t.name)}: field "data_offsets": overlaps tensor ${quoted(prev.name)}`);
    }
    if (t.begin > at)
      bad(
        file,
        `tensor ${quoted(t.name)}: field "data_offsets": starts at ${t.begin - dataStart}, leaving bytes ${at - dataStart}..${t.begin - dataStart} of the data section unused`,
      );
    at = t.end;
  }
  if (at !== fileSize) {
    bad(
      file,
      `the tensors end at data byte ${at - dataStart} but the data section holds ${dataSize} bytes (header length or offsets do not match the file)`,
    );
  }
  return { file, headerBytes: headerLength, headerText, tensors, metadata };
}

/** Reads and validates the header of one .safetensors file; tensor data is not read. */
export async function readSafetensorsHeader(src: ByteSource): Promise<SafetensorsHeader> {
  const file = src.name;
  if (src.size < 8) bad(file, `truncated: ${src.size} bytes, but the 8-byte header length alone needs 8`);
  const lenBytes = await src.read(0, 8);
  const headerLength = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    bad(file, `field "header length": ${headerLength} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(headerLength);
  if (8 + n > src.size) bad(file, `field "header length": ${n} bytes runs past the end of the file (${src.size} bytes; truncated?)`);
  const headerText = new TextDecoder("utf-8", { fatal: false }).decode(await src.read(8, n));
  const json = parseJson(headerText, (where) => bad(file, `header: not valid JSON${where}`));
  return validateHeader(file, src.size, n, json, headerText);
}

export function dtypeBytes(dtype: TensorDtype): number {
  return DTYPE_BYTES[dtype];
}
