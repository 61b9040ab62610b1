// Lifetimes written the way people say them (`90s`, `15m`, `12h`, `30d`, `2w`, `1y`). Pure.

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, y: 31_536_000 };

/** Seconds in `text`, or throws an Error saying what is accepted. */
export function parseDuration(text: string): number {
  const match = /^(\d+)([smhdwy])$/.exec(text.trim());
  const seconds = match ? Number(match[1]) * UNIT_SECONDS[match[2]] : 0;
  if (!match || seconds <= 0 || !Number.isSafeInteger(seconds)) {
    throw new Error(`"${text}" is not a duration: write a positive whole number and a unit, s m h d w or y (e.g. 30d)`);
  }
  return seconds;
}
