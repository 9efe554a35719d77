import { CatsError } from "../errors.js";
import type { KernelSource } from "./kernelsource.js";

/**
 * How a weight matrix is stored on the GPU. Floats have a template `kernels/weights_<format>.wgsl`;
 * quantized formats name bits and group size, `t` for a transposed matrix whose groups run down its
 * rows (W_down^T), and share the templates `weights_q.wgsl` / `weights_qt.wgsl`.
 */
/** Row groups (g), the same in row blocks (bg, as f32b/f16b), or W_down^T's groups down its rows (tg; sg in column slices, as f32s/f16s). */
export type QuantFormat = `q${4 | 8}g${number}` | `q${4 | 8}bg${number}` | `q${4 | 8}tg${number}` | `q${4 | 8}sg${number}`;
/**
 * Float matrices row after row (f32, f16), or in blocks of ROW_BLOCK rows stored side by side per
 * 8-column block (f32b, f16b; kernels/rowblock.wgsl), the layout CPU drivers' rows kernels stream;
 * or (W_down^T) in column slices of SLICE_BLOCKS blocks of 8, every row's part of a slice one after
 * another (f32s, f16s; kernels/sliceblock.wgsl), so that a down projection walking a slice down the
 * neurons reads one contiguous stream.
 */
export type FloatFormat = "f32" | "f16" | "f32b" | "f16b" | "f32s" | "f16s";
export type WeightFormat = FloatFormat | QuantFormat;

/** Rows per block of the f32b/f16b layouts: 8 lanes of 4 rows, the CPU rows kernels' fibre. */
export const ROW_BLOCK = 32;

/** Blocks of 8 columns per slice of the f32s/f16s layouts: 128 columns, 256 bytes of an f16 row. */
export const SLICE_BLOCKS = 16;

export const isFloatFormat = (f: WeightFormat): f is FloatFormat => /^f(16|32)[bs]?$/.test(f);
/** Bytes of one element of a float format. */
export const floatBytes = (f: FloatFormat): number => (f.startsWith("f16") ? 2 : 4);
/** Whether a format stores W_down^T in column slices: f32s, f16s, q{bits}sg{G}. */
export const isSliced = (f: WeightFormat): boolean => f === "f32s" || f === "f16s" || /^q\dsg/.test(f);
/** Quantized W_down^T, groups down its rows (kernels/qtlayout.wgsl), in rows or column slices. */
export const isTransposedQuantized = (f: WeightFormat): boolean => /^q\d[ts]g/.test(f);
/** Whether a format stores its rows in blocks of ROW_BLOCK: f32b, f16b, q{bits}bg{G}. */
export const isRowBlocked = (f: WeightFormat): boolean => f === "f32b" || f === "f16b" || /^q\dbg/.test(f);
/** Quantized in row groups (kernels/qrows.wgsl), in rows or row blocks. */
export const isRowQuantized = (f: WeightFormat): boolean => /^q\db?g/.test(f);

const QUANT_FORMAT = /^q([48])(t|b|s)?g(\d+)$/;

/** The template files and their substitutions for a weight format. */
function weightTemplate(template: string, format: WeightFormat, where: string): { files: string[]; args: Record<string, string> } {
  if (isFloatFormat(format)) {
    const element = floatBytes(format) === 2 ? "f16" : "f32";
    const layout = isSliced(format) ? "sliceblock" : "rowblock";
    return {
      files: [layout, `${template}_${element}`],
      args: { RB: String(isRowBlocked(format) ? ROW_BLOCK : 1), SB: String(SLICE_BLOCKS) },
    };
  }
  const q = QUANT_FORMAT.exec(format);
  if (!q) throw new CatsError(`${where}: unknown weight format ${String(format)}`);
  if (template === "weights8u") throw new CatsError(`${where}: weight format ${format}: uniform-array weights are f32 or f16`);
  // Row groups are whole blocks of 8 columns; a transposed matrix's groups count rows, any number.
  const g = Number(q[3]);
  const transposed = isTransposedQuantized(format);
  if (g === 0 || (!transposed && g % 8 !== 0)) throw new CatsError(`${where}: weight format ${format}: groups are whole blocks of 8`);
  // Row-grouped and transposed formats share their layouts (qrows.wgsl, qtlayout.wgsl) between the block readers.
  const files = transposed ? ["qtlayout", `${template}_qt`] : ["qrows", `${template}_q`];
  return {
    files,
    args: { BITS: q[1], G: q[3], RS: String(q[2] === "b" ? ROW_BLOCK : 1), QS: String(q[2] === "s"), SB: String(SLICE_BLOCKS) },
  };
}

/** What to build a kernel from: a file, its weight matrices' formats, compile-time constants, an entry point. */
export interface KernelSpec {
  file: string;
  entry?: string;
  /** Format of every matrix the file names in a `//#weights` line. */
  weights?: Record<string, WeightFormat>;
  /** Emitted as WGSL `const`s before the file: block sizes, flags. */
  consts?: Record<string, number | boolean>;
}

export type BindingKind = "uniform" | "read-only-storage" | "storage";

export interface BindingDecl {
  name: string;
  binding: number;
  kind: BindingKind;
  /** True for the params struct, which the kernel fills itself; every other binding is a buffer the caller names. */
  params: boolean;
}

export type ParamType = "u32" | "i32" | "f32";

/** The interface of a composed kernel: its bindings by name and the fields of its uniform params. */
export interface KernelInterface {
  bindings: BindingDecl[];
  /** The uniform params binding (named `p` by convention), if the kernel has one. */
  params: { name: string; fields: { name: string; type: ParamType }[] } | null;
}

/** Bindings generated for weight matrices start here, above any a kernel file declares itself. */
const WEIGHT_BINDING_BASE = 16;

const INCLUDE = /^\/\/#include\s+(\S+)((?:\s+\w+=\w+)*)\s*$/;
const WEIGHTS = /^\/\/#weights(8u|8)?\s+(.+)$/;
const CONDITION = /^\/\/#(if|elif)\s+(!?)(\w+)\s*$/;
const DIRECTIVE = /^\s*(enable\s+[\w\s,]+|diagnostic\s*\([^)]*\))\s*;\s*$/;

function constLine(name: string, value: number | boolean): string {
  if (typeof value === "boolean") return `const ${name}: bool = ${value};`;
  if (Number.isInteger(value) && value >= 0) return `const ${name}: u32 = ${value}u;`;
  return `const ${name}: f32 = ${Math.fround(value)};`;
}

/**
 * Builds one WGSL module from a kernel file. The files use a few line directives:
 * - `//#include file KEY=VALUE ...` pulls in another file once per argument set, with `$KEY` replaced;
 * - `//#weights A B` declares weight matrices: each becomes a binding and a reader `load_A(row, k, cols4)`
 *   of 4-column blocks, in the storage format the spec gives (`weights_<format>.wgsl`); `//#weights8`
 *   gives `load8_A(row, k, cols8)` of 8-column blocks instead (`weights8_<format>.wgsl`), and `//#weights8u`
 *   the same from a uniform array of `A_VEC4S` vec4s (`weights8u_<format>.wgsl`, f32 and f16);
 * - `//#if NAME` / `//#elif NAME` / `//#else` / `//#endif` keep lines by a boolean const (`!NAME` negates).
 * Constants are emitted first, as WGSL `const`s; `enable` and `diagnostic` directives are hoisted to the top.
 */
export function composeKernel(source: KernelSource, spec: KernelSpec): string {
  const consts = spec.consts ?? {};
  const where = `kernel ${spec.file}`;
  const flag = (name: string): boolean => {
    const v = consts[name];
    if (typeof v !== "boolean") throw new CatsError(`${where}: //#if ${name} needs a boolean const ${name}, got ${String(v)}`);
    return v;
  };
  const seen = new Set<string>();
  /** Weight matrices the file declares, with the template each reads through: `weights` or `weights8`. */
  const wanted: { name: string; template: string }[] = [];
  const expand = (name: string, args: Record<string, string>): string[] => {
    const key = `${name} ${JSON.stringify(args)}`;
    if (seen.has(key)) return [];
    seen.add(key);
    let text = source(name);
    for (const [k, v] of Object.entries(args)) text = text.replaceAll(`$${k}`, v);
    const out: string[] = [];
    // Per open //#if: whether its lines are kept now, and whether an earlier branch was taken.
    const stack: { keep: boolean; taken: boolean }[] = [];
    const active = () => stack.every((s) => s.keep);
    for (const line of text.split("\n")) {
      const trimmed = line.trim();
      const cond = CONDITION.exec(trimmed);
      if (cond) {
        const value = flag(cond[3]) !== (cond[2] === "!");
        if (cond[1] === "if") stack.push({ keep: value, taken: value });
        else {
          const top = stack[stack.length - 1];
          if (!top) throw new CatsError(`${where}: //#elif without //#if in ${name}.wgsl`);
          top.keep = !top.taken && value;
          top.taken ||= value;
        }
        continue;
      }
      if (trimmed === "//#else" || trimmed === "//#endif") {
        const top = stack[stack.length - 1];
        if (!top) throw new CatsError(`${where}: ${trimmed} without //#if in ${name}.wgsl`);
        if (trimmed === "//#else") {
          top.keep = !top.taken;
          top.taken = true;
        } else stack.pop();
        continue;
      }
      if (!active()) continue;
      const inc = INCLUDE.exec(trimmed);
      if (inc) {
        const incArgs = Object.fromEntries(
          inc[2]
            .trim()
            .split(/\s+/)
            .filter((a) => a !== "")
            .map((a) => a.split("=") as [string, string]),
        );
        out.push(...expand(inc[1], incArgs));
        continue;
      }
      const w = WEIGHTS.exec(trimmed);
      if (w) {
        for (const name of w[2].trim().split(/[\s,]+/)) wanted.push({ name, template: `weights${w[1] ?? ""}` });
        continue;
      }
      out.push(line);
    }
    if (stack.length > 0) throw new CatsError(`${where}: //#if without //#endif in ${name}.wgsl`);
    return out;
  };
  const body = expand(spec.file, {});
  const given = spec.weights ?? {};
  for (const w of wanted) {
    if (!(w.name in given)) throw new CatsError(`${where}: no storage format given for weight matrix "${w.name}"`);
  }
  for (const name of Object.keys(given)) {
    if (!wanted.some((w) => w.name === name)) {
      throw new CatsError(`${where}: declares no weight matrix "${name}" (it has ${wanted.map((w) => w.name).join(", ") || "none"})`);
    }
  }
  const weightCode = wanted.map((w, i) => {
    const t = weightTemplate(w.template, given[w.name], where);
    let text = t.files
      .map(source)
      .join("\n")
      .replaceAll("$W", w.name)
      .replaceAll("$BINDING", String(WEIGHT_BINDING_BASE + i));
    for (const [k, v] of Object.entries(t.args)) text = text.replaceAll(`$${k}`, v);
    return text;
  });
  const lines = [...Object.entries(consts).map(([k, v]) => constLine(k, v)), ...weightCode.join("\n").split("\n"), ...body];
  const directives = [...new Set(lines.filter((l) => DIRECTIVE.test(l)).map((l) => l.trim()))];
  return [...directives, ...lines.filter((l) => !DIRECTIVE.test(l))].join("\n");
}

const BINDING = /@group\(0\)\s*@binding\((\d+)\)\s*var(?:<([^>]+)>)?\s+(\w+)\s*:\s*([^;]+);/g;
const STRUCT = /struct\s+(\w+)\s*\{([^}]*)\}/g;

function bindingKind(space: string | undefined, kernel: string, name: string): BindingKind {
  const s = (space ?? "").replace(/\s/g, "");
  if (s === "uniform") return "uniform";
  if (s === "storage" || s === "storage,read") return "read-only-storage";
  if (s === "storage,read_write") return "storage";
  throw new CatsError(`kernel ${kernel}: binding "${name}" has address space <${space ?? ""}>, which cats does not bind`);
}

/** Reads a composed kernel's bindings and its uniform params struct, so TypeScript can bind by name. */
export function parseInterface(code: string, kernel: string): KernelInterface {
  const stripped = code.replace(/\/\/.*$/gm, "");
  const structs = new Map<string, string>();
  for (const m of stripped.matchAll(STRUCT)) structs.set(m[1], m[2]);
  const bindings: BindingDecl[] = [];
  let params: KernelInterface["params"] = null;
  for (const m of stripped.matchAll(BINDING)) {
    const [, num, space, name, type] = m;
    const kind = bindingKind(space, kernel, name);
    if (bindings.some((b) => b.binding === Number(num))) throw new CatsError(`kernel ${kernel}: binding ${num} is declared twice`);
    bindings.push({ name, binding: Number(num), kind, params: kind === "uniform" && structs.has(type.trim()) });
    const struct = structs.get(type.trim());
    // The uniform struct is the params block (named `p` by convention); other uniforms (arrays) are buffers.
    if (kind === "uniform" && struct !== undefined) {
      if (params) throw new CatsError(`kernel ${kernel}: more than one uniform params struct ("${params.name}", "${name}")`);
      const fields = struct
        .split(",")
        .map((f) => f.trim())
        .filter((f) => f !== "")
        .map((f) => {
          const [fname, ftype] = f.split(":").map((s) => s.trim());
          if (ftype !== "u32" && ftype !== "i32" && ftype !== "f32") {
            throw new CatsError(`kernel ${kernel}: params field "${fname}" has type ${ftype}; params hold u32, i32 and f32 scalars only`);
          }
          return { name: fname, type: ftype as ParamType };
        });
      params = { name, fields };
    }
  }
  return { bindings: bindings.sort((a, b) => a.binding - b.binding), params };
}
