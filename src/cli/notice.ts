/** A line for the user on stderr that is not an error (a first-use measurement, a cache that was ignored). */
export function notice(message: string): void {
  process.stderr.write(`cats: ${message}\n`);
}
