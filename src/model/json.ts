/**
 * Where a JSON.parse error happened, for a message: " (line L, column C)". V8's own message quotes
 * the start of the text, which for a mis-pointed path (config.json -> /etc/passwd) would print
 * the file's bytes, so only the position is kept.
 */
export function jsonErrorWhere(e: unknown, text: string): string {
  if (e instanceof RangeError) return " (nested too deeply)";
  const m = /at position (\d+)/.exec((e as Error)?.message ?? "");
  if (!m) return /end of JSON input/.test((e as Error)?.message ?? "") ? " (the text ends early)" : "";
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split("\n").length;
  const column = pos - before.lastIndexOf("\n");
  return ` (line ${line}, column ${column})`;
}

/** JSON.parse that reports failures through `fail(where)` instead of V8's message. */
export function parseJson(text: string, fail: (where: string) => never): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    return fail(jsonErrorWhere(e, text));
  }
}
