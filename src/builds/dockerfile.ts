// The base images a Dockerfile builds on: the FROM lines, with ARGs declared
// before the first FROM substituted (build args override their defaults),
// earlier stage names and `scratch` left out. Enough of the Dockerfile grammar
// to find FROM reliably: the escape directive, line continuations, comments
// and heredoc bodies. Pure.

const ESCAPE_DIRECTIVE = /^#\s*escape\s*=\s*([`\\])\s*$/i;
const HEREDOC = /<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;

/** Instructions one per entry, continuations joined, comments and heredoc bodies dropped. */
export function dockerfileInstructions(text: string): string[] {
  const lines = text.split(/\r?\n/);
  let escape = '\\';
  // Parser directives may only open the file.
  for (const line of lines) {
    const directive = /^#\s*([a-z]+)\s*=/i.exec(line);
    if (!directive) break;
    const match = ESCAPE_DIRECTIVE.exec(line);
    if (match) escape = match[1]!;
  }

  const instructions: string[] = [];
  let current = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && current === '')) continue;
    if (trimmed === '') continue; // an empty line inside a continuation does not end it
    const body = line.trimEnd();
    if (body.endsWith(escape)) {
      current += body.slice(0, -1) + ' ';
      continue;
    }
    current += body;
    instructions.push(current.trim());
    i = skipHeredocBodies(current, lines, i);
    current = '';
  }
  if (current.trim() !== '') instructions.push(current.trim());
  return instructions;
}

/** Index of the last line of the heredoc bodies that `instruction` opens (or `at` when none). */
function skipHeredocBodies(instruction: string, lines: string[], at: number): number {
  let i = at;
  for (const match of instruction.matchAll(HEREDOC)) {
    const stripTabs = match[1] === '-';
    const word = match[3]!;
    for (i += 1; i < lines.length; i++) {
      const candidate = stripTabs ? lines[i]!.replace(/^\t+/, '') : lines[i]!;
      if (candidate.trimEnd() === word) break;
    }
  }
  return i;
}

/** `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME:+alternative}` against `vars`; unknown names expand to ''. */
export function expandVariables(value: string, vars: Record<string, string>): string {
  return value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_all, braced, op, word, bare) => {
    const name: string = braced ?? bare;
    const set = vars[name] !== undefined && vars[name] !== '';
    if (op === '-') return set ? vars[name]! : word;
    if (op === '+') return set ? word : '';
    return vars[name] ?? '';
  });
}

function unquote(value: string): string {
  return /^(["']).*\1$/.test(value) ? value.slice(1, -1) : value;
}

/** Base image refs in order of first use, without duplicates. */
export function baseImagesOf(dockerfile: string, buildArgs: Record<string, string> = {}): string[] {
  const globalArgs: Record<string, string> = {};
  const stages = new Set<string>();
  const images: string[] = [];
  let seenFrom = false;
  for (const instruction of dockerfileInstructions(dockerfile)) {
    const [keyword = '', ...words] = instruction.split(/\s+/);
    const upper = keyword.toUpperCase();
    if (upper === 'ARG' && !seenFrom) {
      for (const word of words) {
        const eq = word.indexOf('=');
        const name = eq === -1 ? word : word.slice(0, eq);
        const fallback = eq === -1 ? undefined : unquote(word.slice(eq + 1));
        const value = buildArgs[name] ?? fallback;
        if (value !== undefined) globalArgs[name] = value;
      }
    }
    if (upper !== 'FROM') continue;
    seenFrom = true;
    const operands = words.filter((w) => !w.startsWith('--'));
    const image = expandVariables(operands[0] ?? '', globalArgs);
    const isBase = image !== '' && image.toLowerCase() !== 'scratch' && !stages.has(image.toLowerCase());
    if (isBase && !images.includes(image)) images.push(image);
    if (operands[1]?.toUpperCase() === 'AS' && operands[2]) stages.add(operands[2].toLowerCase());
  }
  return images;
}
