/**
 * How error messages show values and names that came from a file. A file from a stranger may hold
 * control characters (a terminal escape in a tensor name), values nested 100,000 deep, or megabytes
 * in one string; a message shows none of that verbatim.
 */

const MAX_SHOWN = 80;

/** Escapes control characters (C0, DEL, C1, line and paragraph separators) as \xNN / \uNNNN. */
export function escapeControl(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/**
 * Generated text for a terminal: newlines and tabs stay, other control characters (a vocab's
 * <0x1B> byte token would start an escape sequence) are shown escaped.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => escapeControl(c));
}

/** Cuts `text` to `max` characters, saying how much was left out. */
export function bounded(text: string, max = MAX_SHOWN): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length - max} more characters)`;
}

/** A value read from JSON, shown in one short line: scalars as JSON, containers by kind and size. */
export function shown(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null || typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return bounded(escapeControl(JSON.stringify(v)));
  if (Array.isArray(v)) {
    if (v.length <= 8 && v.every((x) => x === null || typeof x === "number" || typeof x === "boolean")) return `[${v.join(", ")}]`;
    return `a list of ${v.length} items`;
  }
  if (typeof v === "object") return "an object";
  return typeof v;
}

/** A name from a file (tensor, key, vocab entry) in quotes, escaped and bounded. */
export function quoted(name: string): string {
  return `"${bounded(escapeControl(name))}"`;
}
