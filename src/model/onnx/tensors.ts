import { CatsError } from "../../errors.js";
import type { ByteSource } from "../bytesource.js";
import { memorySource } from "../bytesource.js";
import type { ModelFiles } from "../checkpoint.js";
import { quoted } from "../describe.js";
import { halfToFloat } from "../dtype.js";
import type { FloatDtype } from "../safetensors.js";
import { int64, type OnnxTensor } from "./proto.js";

/** TensorProto.DataType -> bytes per element, for the types whose external-data length can be checked. */
const ELEMENT_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };
const FLOAT_DTYPES: Record<number, FloatDtype> = { 1: "F32", 10: "F16", 16: "BF16" };
const TYPE_NAMES: Record<number, string> = {
  2: "uint8",
  3: "int8",
  4: "uint16",
  5: "int16",
  6: "int32",
  7: "int64",
  9: "bool",
  11: "double",
};
const EXTERNAL = 1;

/** A float tensor's bytes in the file's own layout (row-major, little-endian). */
export interface OnnxTensorBytes {
  dtype: FloatDtype;
  shape: number[];
  source: ByteSource;
  begin: number;
  end: number;
}

export const shapeOf = (t: OnnxTensor): number[] => (t.dims ?? []).map(int64);
const elementsOf = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

/**
 * Where tensors' bytes live: inside model.onnx, or in external data files beside it. Every external
 * range is checked when the model is opened, as the safetensors reader checks its offsets: inside
 * the file, no overlap, and exactly the bytes its shape needs.
 */
export class OnnxTensorStore {
  private readonly external = new Map<string, ByteSource>();

  private constructor(
    private readonly files: ModelFiles,
    private readonly modelFile: string,
    private readonly dir: string,
    private readonly refs: Map<OnnxTensor, ExternalRef>,
  ) {}

  get sources(): ByteSource[] {
    return [...this.external.values()];
  }

  static async open(files: ModelFiles, modelName: string, tensors: OnnxTensor[]): Promise<OnnxTensorStore> {
    const modelFile = files.pathOf(modelName);
    const dir = modelName.includes("/") ? modelName.slice(0, modelName.lastIndexOf("/") + 1) : "";
    const refs = new Map<OnnxTensor, ExternalRef>();
    const store = new OnnxTensorStore(files, modelFile, dir, refs);
    try {
      const byFile = new Map<string, { t: OnnxTensor; ref: ExternalRef }[]>();
      for (const t of tensors) {
        if (t.dataLocation !== EXTERNAL) {
          store.checkInline(t);
          continue;
        }
        const ref = store.externalRef(t);
        refs.set(t, ref);
        byFile.set(ref.location, [...(byFile.get(ref.location) ?? []), { t, ref }]);
      }
      for (const [location, list] of byFile) {
        const src = await store.openExternal(location, list[0].t);
        for (const { t, ref } of list) {
          if (ref.offset + ref.length > src.size) {
            store.bad(
              t,
              `external data bytes ${ref.offset}..${ref.offset + ref.length} lie outside ${src.name} (${src.size} bytes; truncated?)`,
            );
          }
        }
        const sorted = [...list].sort((a, b) => a.ref.offset - b.ref.offset);
        for (let i = 1; i < sorted.length; i++) {
          const prev = sorted[i - 1];
          if (sorted[i].ref.offset < prev.ref.offset + prev.ref.length && sorted[i].ref.length > 0 && prev.ref.length > 0) {
            store.bad(sorted[i].t, `external data overlaps initializer ${quoted(prev.t.name ?? "")} in ${src.name}`);
          }
        }
      }
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  async close(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.close()));
  }

  private bad(t: OnnxTensor, what: string): never {
    throw new CatsError(`${this.modelFile}: initializer ${quoted(t.name ?? "")}: ${what}`);
  }

  private expectedBytes(t: OnnxTensor): number | null {
    const size = ELEMENT_BYTES[t.dataType ?? 0];
    if (size === undefined) return null;
    const n = elementsOf(shapeOf(t)) * size;
    if (!Number.isSafeInteger(n) || shapeOf(t).some((d) => d < 0)) this.bad(t, `shape [${shapeOf(t).join(", ")}] is not a valid size`);
    return n;
  }

  private checkInline(t: OnnxTensor): void {
    const raw = t.rawData;
    if (!raw || raw.byteLength === 0) return;
    const expected = this.expectedBytes(t);
    if (expected !== null && raw.byteLength !== expected) {
      this.bad(t, `raw_data holds ${raw.byteLength} bytes but shape [${shapeOf(t).join(", ")}] needs ${expected}`);
    }
  }

  private externalRef(t: OnnxTensor): ExternalRef {
    const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
    const location = entries.get("location") ?? "";
    // Like safetensors shard names: a file beside model.onnx, never a path that leaves the model directory.
    if (location === "" || location.includes("/") || location.includes("\\") || location === "." || location === "..") {
      this.bad(t, `external data location ${quoted(location)}: expected a file name in the same directory as the model`);
    }
    const num = (key: string, fallback: number | null): number => {
      const v = entries.get(key);
      if (v === undefined) {
        if (fallback === null) this.bad(t, `external data has no ${key}`);
        return fallback;
      }
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
        this.bad(t, `external data ${key} ${quoted(v)}: expected a non-negative integer`);
      return Number(v);
    };
    const expected = this.expectedBytes(t);
    const offset = num("offset", 0);
    const length = num("length", expected);
    if (expected !== null && length !== expected) {
      this.bad(t, `external data length ${length} bytes, but shape [${shapeOf(t).join(", ")}] needs ${expected}`);
    }
    return { location, offset, length };
  }

  private async openExternal(location: string, first: OnnxTensor): Promise<ByteSource> {
    const have = this.external.get(location);
    if (have) return have;
    const name = this.dir + location;
    if (!(await this.files.exists(name))) this.bad(first, `external data file ${this.files.pathOf(name)} not found`);
    const src = await this.files.openBinary(name);
    this.external.set(location, src);
    return src;
  }

  /** The bytes of a float weight, where they are; float_data and int32_data (f16 bit patterns) are packed in memory. */
  bytes(t: OnnxTensor, role: string): OnnxTensorBytes {
    const dtype = FLOAT_DTYPES[t.dataType ?? 0];
    if (!dtype) {
      this.bad(
        t,
        `${role}: element type ${TYPE_NAMES[t.dataType ?? 0] ?? `#${t.dataType}`} is not a float type the engine computes with (float32, float16, bfloat16)`,
      );
    }
    const shape = shapeOf(t);
    const expected = this.expectedBytes(t)!;
    const ref = this.refs.get(t);
    if (ref) return { dtype, shape, source: this.external.get(ref.location)!, begin: ref.offset, end: ref.offset + ref.length };
    const here = (bytes: Uint8Array): OnnxTensorBytes => ({
      dtype,
      shape,
      source: memorySource(this.modelFile, bytes),
      begin: 0,
      end: bytes.byteLength,
    });
    // A plain Uint8Array view: on a Node Buffer, slice() would share memory instead of copying.
    if (t.rawData && t.rawData.byteLength > 0) return here(new Uint8Array(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength));
    const n = elementsOf(shape);
    const out = new Uint8Array(expected);
    const view = new DataView(out.buffer);
    if (dtype === "F32") {
      const v = t.floatData ?? [];
      if (v.length !== n) this.bad(t, `float_data holds ${v.length} values but shape [${shape.join(", ")}] needs ${n}`);
      v.forEach((x, i) => view.setFloat32(4 * i, x, true));
    } else {
      const v = t.int32Data ?? [];
      if (v.length !== n) this.bad(t, `int32_data holds ${v.length} values but shape [${shape.join(", ")}] needs ${n}`);
      v.forEach((x, i) => view.setUint16(2 * i, x & 0xffff, true));
    }
    return here(out);
  }

  /** A small constant's values as numbers (eps, gains in checks); null when it is not a float or int scalar-ish tensor. */
  async values(t: OnnxTensor): Promise<number[] | null> {
    const dt = t.dataType ?? 0;
    if (t.floatData && t.floatData.length > 0) return t.floatData;
    if (dt !== 1 && dt !== 10 && dt !== 11) return null;
    const ref = this.refs.get(t);
    const raw = ref ? await this.external.get(ref.location)!.read(ref.offset, ref.length) : t.rawData;
    if (!raw) return null;
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const size = ELEMENT_BYTES[dt];
    const out: number[] = [];
    for (let i = 0; i + size <= raw.byteLength; i += size) {
      out.push(dt === 1 ? view.getFloat32(i, true) : dt === 11 ? view.getFloat64(i, true) : halfToFloat(view.getUint16(i, true)));
    }
    return out;
  }
}

/** [rows, cols] -> [cols, rows], done when the tensor is read so that opening a model stays cheap. */
export function transposedSource(t: OnnxTensorBytes): OnnxTensorBytes {
  const [rows, cols] = t.shape;
  const size = (t.end - t.begin) / (rows * cols);
  const inner = t.source;
  const length = t.end - t.begin;
  const source: ByteSource = {
    name: inner.name,
    size: length,
    async read(offset, n) {
      if (offset + n > length) throw new RangeError(`${inner.name}: read past end`);
      const read = await inner.read(t.begin, length);
      const src = read.byteOffset % 4 === 0 ? read : new Uint8Array(read);
      const out = new Uint8Array(length);
      const Elem = size === 4 ? Uint32Array : Uint16Array;
      const from = new Elem(src.buffer as ArrayBuffer, src.byteOffset, rows * cols);
      const to = new Elem(out.buffer, 0, rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
      return offset === 0 && n === length ? out : out.slice(offset, offset + n);
    },
    async close() {},
  };
  return { dtype: t.dtype, shape: [cols, rows], source, begin: 0, end: length };
}
