#!/usr/bin/env node
// Entry point for `cats`: the compiled CLI lives in dist/ (npm run build). The command runs in a
// child process so that Dawn's adapter warnings, which it writes straight to fd 2, can be filtered
// out of stderr (src/cli/launcher.ts).
import { fileURLToPath } from "node:url";

if (process.env.CATS_CHILD === "1") {
  const { adoptTerminal } = await import("../dist/src/cli/launcher.js");
  adoptTerminal();
  await import("../dist/src/cli/main.js");
} else {
  const { launch } = await import("../dist/src/cli/launcher.js");
  launch(fileURLToPath(import.meta.url));
}
