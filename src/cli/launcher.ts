import { spawn } from "node:child_process";

/**
 * Dawn's Vulkan backend prints these two lines to stderr (fd 2, from C++) whenever an adapter is
 * requested on lavapipe and some other drivers; no toggle or request turns them off, and they would
 * make every one-line error three lines.
 */
const DAWN_NOISE =
  /Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;
const NOISE_START = "Warning: maxDynamic";

/**
 * Forwards a child's stderr, dropping Dawn's noise lines, also where one lands after a progress bar's
 * redraw (which ends no line). Partial lines go through at once unless their tail could still
 * become a noise line.
 */
export class StderrFilter {
  private held = "";

  constructor(private readonly write: (text: string) => void) {}

  push(chunk: string): void {
    let text = this.held + chunk;
    this.held = "";
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl < 0) break;
      const line = text.slice(0, nl);
      text = text.slice(nl + 1);
      const noise = DAWN_NOISE.exec(line);
      const kept = noise ? line.slice(0, noise.index) : line + "\n";
      if (kept !== "") this.write(kept);
    }
    const start = text.lastIndexOf("W");
    const tail = start < 0 ? "" : text.slice(start);
    if (tail !== "" && tail.length <= 200 && (NOISE_START.startsWith(tail) || tail.startsWith(NOISE_START))) {
      this.held = tail;
      text = text.slice(0, start);
    }
    if (text !== "") this.write(text);
  }

  end(): void {
    if (this.held !== "") this.write(this.held);
    this.held = "";
  }
}

/**
 * Runs the CLI (`entry`, with this process's arguments) in a child whose stderr passes through
 * StderrFilter; stdin and stdout are the child's own. The child is told whether stderr is a
 * terminal, so progress bars still draw. Exit status and signals are passed on.
 */
export function launch(entry: string): void {
  const child = spawn(process.execPath, [...process.execArgv, entry, ...process.argv.slice(2)], {
    stdio: ["inherit", "inherit", "pipe"],
    env: { ...process.env, CATS_CHILD: "1", CATS_STDERR_TTY: process.stderr.isTTY ? String(process.stderr.columns ?? 80) : "" },
  });
  const filter = new StderrFilter((t) => process.stderr.write(t));
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => filter.push(chunk));
  // Ctrl-C reaches the whole process group: the child decides how to stop, the launcher waits for it.
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  child.on("close", (code, signal) => {
    filter.end();
    process.stderr.write("", () => {
      if (signal) {
        process.removeAllListeners(signal);
        process.kill(process.pid, signal);
      } else process.exit(code ?? 1);
    });
  });
}

/** In the child: make stderr look like the terminal it ends up on, so progress bars redraw in place. */
export function adoptTerminal(): void {
  const columns = process.env.CATS_STDERR_TTY;
  if (!columns) return;
  const stderr = process.stderr as NodeJS.WriteStream & { isTTY: boolean; columns: number };
  stderr.isTTY = true;
  stderr.columns = Number(columns) || 80;
}
