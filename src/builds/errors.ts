// The builds domain's one error type. The API layer maps `kind` to HTTP:
// invalid-input → 400, denied → 403, not-found → 404, conflict → 409,
// limited → 429, unavailable → 503; build-failed and cancelled become a
// build's status, not an HTTP error.

export type BuildErrorKind =
  /** The request or the uploaded source is wrong; the message says how to fix it. */
  | 'invalid-input'
  /** The builder ran and failed, or its output could not be understood. */
  | 'build-failed'
  /** The build was stopped through its AbortSignal (cancel or timeout); `cause` is the abort reason. */
  | 'cancelled'
  /** The caller may not do this (an admin build by a tenant, a FROM image it may not pull). */
  | 'denied'
  /** No such build (or none the caller may see). */
  | 'not-found'
  /** The build is in a state that does not allow this (cancelling one that ended). */
  | 'conflict'
  /** A limit of the caller's is reached (builds waiting per tenant); trying later helps. */
  | 'limited'
  /** This server cannot build at all (no BuildKit); the message says what is missing. */
  | 'unavailable';

export class BuildError extends Error {
  constructor(
    readonly kind: BuildErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BuildError';
  }
}

export function invalidInput(message: string): BuildError {
  return new BuildError('invalid-input', message);
}
