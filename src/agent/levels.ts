// The level-prefix protocol of process output (core0-protocol.md §6): `<level>::text` is one
// message, `<level>:::text` opens a multi-line one closed by a line `:::`; other lines carry the
// stream's default level (1 stdout, 2 stderr); empty lines are ignored.

const PREFIX = /^(\d+)(:::|::)(.*)$/;
/** One output line is cut here, so a process cannot grow the agent's memory with one huge line. */
export const MAX_LINE = 64 * 1024;

export type Emit = (level: number, text: string) => void;

export class LevelParser {
  private partial = '';
  private partialBytes = 0;
  private block: { level: number; lines: string[] } | null = null;

  constructor(private readonly defaultLevel: number, private readonly emit: Emit) {}

  write(chunk: Buffer | string): void {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      this.append(text.slice(start, nl));
      this.line(this.partial);
      this.partial = '';
      this.partialBytes = 0;
      start = nl + 1;
    }
    if (start < text.length) this.append(text.slice(start));
  }

  /** End of the stream: a last unterminated line counts; an open multi-line block is discarded. */
  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
    this.block = null;
  }

  private append(s: string): void {
    if (this.partialBytes >= MAX_LINE) return;
    const room = MAX_LINE - this.partialBytes;
    const piece = s.length > room ? s.slice(0, room) : s;
    this.partial += piece;
    this.partialBytes += piece.length;
  }

  private line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (this.block) {
      if (line === ':::') {
        this.emit(this.block.level, this.block.lines.join('\n'));
        this.block = null;
      } else if (line !== '') this.block.lines.push(line);
      return;
    }
    if (line === '') return;
    const m = PREFIX.exec(line);
    const level = m ? Number(m[1]) : NaN;
    // 50 (exit state) and >= 100 are the agent's own: a process printing them is demoted.
    if (!m || level >= 100 || level === 50 || level === 0) {
      this.emit(m && level === 50 ? 2 : this.defaultLevel, line);
      return;
    }
    if (m[2] === ':::') this.block = { level, lines: [m[3]] };
    else this.emit(level, m[3]);
  }
}
