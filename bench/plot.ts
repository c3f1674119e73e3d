// Self-contained SVG bar charts for the results: one horizontal bar per measurement (its
// median), a whisker from min to max, baselines grey and ours coloured, values written at the
// bar's end. No dependency; the files are small, diff-able text next to the results
// (bench/results/<date>[-quick]-<name>.svg), linked from the Markdown and the README.
import fs from 'node:fs';

export interface Bar {
  label: string;
  median: number;
  min?: number;
  max?: number;
  /** a baseline (what a user would pick instead), drawn grey */
  baseline?: boolean;
}

export interface Plot {
  /** file name part: <date>[-quick]-<name>.svg */
  name: string;
  title: string;
  /** axis unit, e.g. "s to first line" */
  unit: string;
  bars: Bar[];
  /** one line under the chart */
  note?: string;
  /** digits of the value labels */
  digits?: number;
}

const W = 760;
const LABEL_W = 330;
const PLOT_W = W - LABEL_W - 90; // value text after the bar
const BAR_H = 18;
const GAP = 8;
const TOP = 62;
const OURS = '#2b6cb0';
const BASE = '#a0aec0';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A round axis end and step (1, 2 or 5 × 10^k) with about five ticks. */
function axis(max: number): { end: number; step: number } {
  if (!(max > 0)) return { end: 1, step: 0.2 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  return { end: Math.ceil(max / step) * step, step };
}

const fmt = (v: number, digits?: number): string => {
  const d = digits ?? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : Math.abs(v) >= 1 ? 2 : 3);
  return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
};

/** Wraps a label to at most two lines of about `width` characters. */
function wrap(label: string, width = 48): string[] {
  if (label.length <= width) return [label];
  const cut = label.lastIndexOf(' ', width);
  const i = cut > 10 ? cut : width;
  const rest = label.slice(i).trim();
  return [label.slice(0, i), rest.length > width ? `${rest.slice(0, width - 1)}…` : rest];
}

export function svg(p: Plot): string {
  const bars = p.bars.filter((b) => Number.isFinite(b.median));
  const hi = Math.max(...bars.map((b) => Math.max(b.median, b.max ?? 0)), 0);
  const { end, step } = axis(hi);
  const x = (v: number): number => LABEL_W + (PLOT_W * Math.max(0, v)) / end;
  const rowH = BAR_H + GAP + (bars.some((b) => wrap(b.label).length > 1) ? 8 : 0);
  const plotH = bars.length * rowH;
  const H = TOP + plotH + 40 + (p.note ? 16 : 0);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<title>${esc(p.title)}</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="10" y="20" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  out.push(`<text x="10" y="38" fill="#555"><tspan fill="${OURS}">■</tspan> g8os  <tspan fill="${BASE}">■</tspan> baseline  ├┤ min–max</text>`);
  // grid and ticks
  for (let v = 0; v <= end + step / 2; v += step) {
    const gx = x(v).toFixed(1);
    out.push(`<line x1="${gx}" y1="${TOP - 6}" x2="${gx}" y2="${TOP + plotH}" stroke="#e2e8f0"/>`);
    out.push(`<text x="${gx}" y="${TOP + plotH + 14}" text-anchor="middle" fill="#555">${esc(fmt(v, step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)))))}</text>`);
  }
  out.push(`<text x="${LABEL_W + PLOT_W / 2}" y="${TOP + plotH + 30}" text-anchor="middle" fill="#333">${esc(p.unit)}</text>`);
  bars.forEach((b, i) => {
    const y = TOP + i * rowH;
    const lines = wrap(b.label);
    lines.forEach((l, j) => out.push(`<text x="${LABEL_W - 8}" y="${(y + BAR_H / 2 + 4 + (j - (lines.length - 1) / 2) * 13).toFixed(1)}" text-anchor="end">${esc(l)}</text>`));
    const w = Math.max(1, x(b.median) - LABEL_W);
    out.push(`<rect x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${b.baseline ? BASE : OURS}"><title>${esc(`${b.label}: ${fmt(b.median, p.digits)}${b.min !== undefined && b.max !== undefined ? ` [${fmt(b.min, p.digits)}–${fmt(b.max, p.digits)}]` : ''} ${p.unit}`)}</title></rect>`);
    let textX = LABEL_W + w;
    if (b.min !== undefined && b.max !== undefined && b.max > b.min) {
      const [x1, x2, cy] = [x(b.min), x(b.max), y + BAR_H / 2];
      out.push(`<path d="M${x1.toFixed(1)} ${cy}H${x2.toFixed(1)}M${x1.toFixed(1)} ${cy - 5}V${cy + 5}M${x2.toFixed(1)} ${cy - 5}V${cy + 5}" stroke="#1a202c" stroke-width="1.3" fill="none"/>`);
      textX = Math.max(textX, x2);
    }
    out.push(`<text x="${(textX + 6).toFixed(1)}" y="${y + BAR_H / 2 + 4}" fill="#1a202c">${esc(fmt(b.median, p.digits))}</text>`);
  });
  if (p.note) out.push(`<text x="10" y="${H - 8}" fill="#555" font-size="11">${esc(p.note)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Writes each plot as <base>-<name>.svg; returns the file names (no directory), in order. */
export function writePlots(plots: Plot[], base: string): string[] {
  return plots.map((p) => {
    const file = `${base}-${p.name}.svg`;
    fs.writeFileSync(`${file}.tmp`, svg(p));
    fs.renameSync(`${file}.tmp`, file);
    return file.slice(file.lastIndexOf('/') + 1);
  });
}
