/**
 * An error meant for the user: the CLI prints its message on one line and exits non-zero,
 * instead of a stack trace. Everything the user can cause (bad files, bad flags, a lost device)
 * is reported through this class.
 */
export class CatsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CatsError";
  }
}
