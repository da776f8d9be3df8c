// @ts-check
/**
 * Pure functions (no DOM): value scales, palette lookup tables, time ticks, key labels and
 * number formatting. Everything here is deterministic so it can be unit-checked in isolation.
 */

/** Number of lookup-table entries: 0 = zero cell, 1..254 = palette, 255 = no data. */
export const PALETTE_SIZE = 256;
/** Lookup-table index of slots with no column at all (the server sent nothing for them). */
export const NO_DATA_INDEX = 255;
/** Highest palette index a value can map to. */
const TOP_INDEX = 254;

/**
 * Palette stops as [t, r, g, b]. `heat` is the default (dark blue → magenta → orange → pale
 * yellow, monotone in lightness so order survives greyscale); `viridis` is the colour-blind-safe
 * option (matplotlib's viridis, sampled at nine points).
 * @type {Record<import('./types.js').PaletteName, number[][]>}
 */
const STOPS = {
  heat: [
    [0.0, 30, 40, 120],
    [0.25, 90, 40, 160],
    [0.5, 190, 50, 120],
    [0.75, 245, 130, 40],
    [1.0, 255, 240, 150],
  ],
  viridis: [
    [0.0, 68, 1, 84],
    [0.125, 71, 44, 122],
    [0.25, 59, 81, 139],
    [0.375, 44, 113, 142],
    [0.5, 33, 144, 141],
    [0.625, 39, 173, 129],
    [0.75, 92, 200, 99],
    [0.875, 170, 220, 50],
    [1.0, 253, 231, 37],
  ],
};

/** Human names for the palettes, for labels and the legend. */
export const PALETTE_LABELS = { heat: 'Heat (default)', viridis: 'Viridis (colour-blind safe)' };

/**
 * Interpolates a palette at t in [0, 1].
 * @param {import('./types.js').PaletteName} name
 * @param {number} t
 * @returns {[number, number, number]}
 */
export function paletteColor(name, t) {
  const stops = STOPS[name] ?? STOPS.heat;
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
  for (let i = 1; i < stops.length; i++) {
    const a = stops[i - 1];
    const b = stops[i];
    if (x <= b[0]) {
      const f = (x - a[0]) / (b[0] - a[0] || 1);
      return [
        Math.round(a[1] + (b[1] - a[1]) * f),
        Math.round(a[2] + (b[2] - a[2]) * f),
        Math.round(a[3] + (b[3] - a[3]) * f),
      ];
    }
  }
  const last = stops[stops.length - 1];
  return [last[1], last[2], last[3]];
}

/** True when a Uint32 written into an ImageData buffer stores its low byte first. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([0x01020304]).buffer)[0] === 4;

/**
 * Packs an opaque RGBA colour into the Uint32 layout ImageData expects on this machine.
 * @param {number} r
 * @param {number} g
 * @param {number} b
 * @param {number} [a]
 */
export function packRgba(r, g, b, a = 255) {
  return LITTLE_ENDIAN
    ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0
    : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
}

/**
 * Builds the lookup table used by the renderer: entry 0 is the zero colour, entries 1..254 run
 * through the palette, entry 255 is the no-data colour. The lowest non-zero entry is the
 * palette's t = 0, which is far from the zero colour in both schemes, so "a little" never looks
 * like "nothing".
 * @param {import('./types.js').PaletteName} name
 * @param {[number, number, number]} zeroRgb
 * @param {[number, number, number]} noDataRgb
 * @returns {Uint32Array}
 */
export function buildLut(name, zeroRgb, noDataRgb) {
  const lut = new Uint32Array(PALETTE_SIZE);
  lut[0] = packRgba(zeroRgb[0], zeroRgb[1], zeroRgb[2]);
  for (let i = 1; i <= TOP_INDEX; i++) {
    const [r, g, b] = paletteColor(name, (i - 1) / (TOP_INDEX - 1));
    lut[i] = packRgba(r, g, b);
  }
  lut[NO_DATA_INDEX] = packRgba(noDataRgb[0], noDataRgb[1], noDataRgb[2]);
  return lut;
}

/**
 * Returns a function mapping a cell value to a palette index: 0 for zero (or negative / not a
 * number), 1..254 for positive values relative to `max` (values above max clamp to 254).
 * @param {import('./types.js').ScaleKind} kind
 * @param {number} max largest value in view (> 0 for a meaningful scale)
 * @returns {(v: number) => number}
 */
export function makeIndexScale(kind, max) {
  const top = TOP_INDEX - 1;
  if (!(max > 0)) return () => 0;
  if (kind === 'log') {
    const denom = Math.log1p(max);
    return (v) => (v > 0 ? 1 + Math.min(top, Math.floor((Math.log1p(v) / denom) * top)) : 0);
  }
  const k = top / max;
  return (v) => (v > 0 ? 1 + Math.min(top, Math.floor(v * k)) : 0);
}

/** Largest value the index lookup table covers directly; larger values use the scale. */
const TABLE_LIMIT = 1 << 16;

/**
 * A lookup table from small integer values to palette indices (same result as
 * makeIndexScale), so the per-cell work is one array read instead of a logarithm. It covers
 * 0..min(max, 65535); callers fall back to the scale function beyond it.
 * @param {import('./types.js').ScaleKind} kind
 * @param {number} max
 * @returns {Uint8Array}
 */
export function makeIndexTable(kind, max) {
  const scale = makeIndexScale(kind, max);
  const n = Math.min(TABLE_LIMIT, Math.max(1, Math.floor(max) + 1));
  const table = new Uint8Array(n);
  for (let v = 1; v < n; v++) table[v] = scale(v);
  return table;
}

/**
 * Legend tick values between 1 and max: powers of ten (log) or quarters (linear).
 * @param {import('./types.js').ScaleKind} kind
 * @param {number} max
 * @returns {number[]}
 */
export function legendTicks(kind, max) {
  if (!(max > 0)) return [];
  if (kind === 'log') {
    /** @type {number[]} */
    const out = [];
    for (let p = 1; p <= max; p *= 10) out.push(p);
    if (out[out.length - 1] !== max) out.push(max);
    return out;
  }
  return [0.25, 0.5, 0.75, 1].map((f) => f * max);
}

/**
 * Fraction in [0,1] of the legend bar where value v sits.
 * @param {import('./types.js').ScaleKind} kind
 * @param {number} max
 * @param {number} v
 */
export function fractionOf(kind, max, v) {
  if (!(max > 0) || !(v > 0)) return 0;
  return Math.min(1, kind === 'log' ? Math.log1p(v) / Math.log1p(max) : v / max);
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Candidate tick intervals, smallest first. */
const TICK_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
];

/** Duration in ms of each time preset. */
export const PRESET_MS = { '5m': 5 * MINUTE, '15m': 15 * MINUTE, '1h': HOUR, '6h': 6 * HOUR, '24h': DAY, '7d': 7 * DAY };

/**
 * Time ticks for an axis spanning [fromMs, toMs) drawn `widthPx` wide: the tick interval is a
 * "nice" duration that is a multiple of the data step and leaves at least `minPx` between
 * labels; ticks sit on multiples of that interval (in UTC, so they line up with column starts).
 * @param {number} fromMs
 * @param {number} toMs
 * @param {number} widthPx
 * @param {number} stepMs data step (0 when unknown)
 * @param {number} [minPx]
 * @returns {{ interval: number, ticks: number[] }}
 */
export function timeTicks(fromMs, toMs, widthPx, stepMs, minPx = 90) {
  const span = toMs - fromMs;
  if (!(span > 0) || !(widthPx > 0)) return { interval: 0, ticks: [] };
  const wanted = (span * minPx) / widthPx;
  let interval = TICK_STEPS[TICK_STEPS.length - 1];
  for (const s of TICK_STEPS) {
    if (s >= wanted && (stepMs <= 0 || s % stepMs === 0 || s >= stepMs * 10)) {
      interval = s;
      break;
    }
  }
  while (interval < wanted) interval *= 2;
  /** @type {number[]} */
  const ticks = [];
  for (let t = Math.ceil(fromMs / interval) * interval; t < toMs && ticks.length < 200; t += interval) {
    ticks.push(t);
  }
  return { interval, ticks };
}

/**
 * Local-time tick label: date plus time when the interval is a day or more, HH:MM otherwise,
 * with seconds below a minute.
 * @param {number} ms
 * @param {number} interval
 */
export function formatTick(ms, interval) {
  const d = new Date(ms);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (interval >= DAY) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (interval < MINUTE) return `${hm}:${pad(d.getSeconds())}`;
  if (d.getHours() === 0 && d.getMinutes() === 0) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
  return hm;
}

/**
 * Full local date-time with seconds, for tooltips.
 * @param {number} ms
 */
export function formatTime(ms) {
  const d = new Date(ms);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Short duration text, e.g. "60 s", "5 min", "2 h".
 * @param {number} ms
 */
export function formatDuration(ms) {
  if (ms % DAY === 0 && ms >= DAY) return `${ms / DAY} d`;
  if (ms % HOUR === 0 && ms >= HOUR) return `${ms / HOUR} h`;
  if (ms % MINUTE === 0 && ms >= MINUTE) return `${ms / MINUTE} min`;
  return `${ms / SECOND} s`;
}

/**
 * Integer with digit grouping; compact SI suffix when `compact` and >= 10 000.
 * @param {number} v
 * @param {boolean} [compact]
 */
export function formatNumber(v, compact = false) {
  if (!Number.isFinite(v)) return String(v);
  if (compact && Math.abs(v) >= 10000) {
    const units = ['k', 'M', 'G', 'T', 'P'];
    let x = v;
    let i = -1;
    while (Math.abs(x) >= 1000 && i < units.length - 1) {
      x /= 1000;
      i++;
    }
    return `${x.toFixed(x < 10 ? 1 : 0)}${units[i]}`;
  }
  return Math.round(v).toLocaleString('en-US');
}

/**
 * Decodes standard padded base64 (the wire encoding of keys). Returns null for null input and
 * for malformed base64, so a bad key from a peer shows as "?" rather than breaking the page.
 * @param {string|null|undefined} b64
 * @returns {Uint8Array|null}
 */
export function decodeKey(b64) {
  if (b64 == null) return null;
  try {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

/**
 * Hex of a byte string.
 * @param {Uint8Array} bytes
 */
export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * Readable label for a key: the printable-ASCII prefix (at least 2 characters) followed by an
 * ellipsis when bytes were cut; hex ("0x…") when the key does not start printable.
 * @param {Uint8Array|null} bytes
 * @param {'start'|'end'} side null means the empty key for start, unbounded for end
 * @param {number} [max] longest label in characters
 */
export function keyLabel(bytes, side, max = 24) {
  if (bytes == null) return side === 'start' ? '(start)' : '(end)';
  if (bytes.length === 0) return '""';
  let n = 0;
  while (n < bytes.length && n < max && bytes[n] >= 0x20 && bytes[n] < 0x7f) n++;
  if (n >= Math.min(2, bytes.length)) {
    const text = String.fromCharCode(...bytes.subarray(0, n));
    return n < bytes.length ? `${text}…` : text;
  }
  const hex = toHex(bytes.subarray(0, Math.floor(max / 2)));
  return `0x${hex}${bytes.length > max / 2 ? '…' : ''}`;
}

/**
 * Compares two byte strings lexicographically (like the server's start-key order).
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * Whether a row [rowStart, rowEnd) overlaps the key range [start, end) (base64, null = open).
 * @param {string|null} rowStart
 * @param {string|null} rowEnd
 * @param {import('./types.js').KeyRange} range
 */
export function rowInKeyRange(rowStart, rowEnd, range) {
  const rs = decodeKey(rowStart) ?? new Uint8Array(0);
  const re = decodeKey(rowEnd);
  const s = decodeKey(range.start) ?? new Uint8Array(0);
  const e = decodeKey(range.end);
  // The row ends before the range starts, or starts at/after the range end: no overlap.
  if (re != null && compareBytes(re, s) <= 0) return false;
  if (e != null && compareBytes(rs, e) >= 0) return false;
  return true;
}

/**
 * Standard base64 of raw bytes (the wire encoding of keys).
 * @param {Uint8Array} bytes
 */
export function encodeKey(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * The key range holding every key that starts with `text`: [prefix, successor(prefix)).
 * `0x…` is read as hex; anything else as UTF-8. Empty text (or bad hex) gives null (all keys).
 * @param {string} text
 * @returns {import('./types.js').KeyRange|null}
 */
export function prefixRange(text) {
  const t = text.trim();
  if (!t) return null;
  let bytes;
  if (/^0x([0-9a-f]{2})+$/i.test(t)) {
    bytes = new Uint8Array((t.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(t.slice(2 + 2 * i, 4 + 2 * i), 16);
  } else if (/^0x/i.test(t)) {
    return null;
  } else {
    bytes = new TextEncoder().encode(t);
  }
  // Successor: drop trailing 0xff bytes, then increment the last one; none left = unbounded.
  let n = bytes.length;
  while (n > 0 && bytes[n - 1] === 0xff) n--;
  let end = null;
  if (n > 0) {
    const succ = bytes.slice(0, n);
    succ[n - 1]++;
    end = encodeKey(succ);
  }
  return { start: encodeKey(bytes), end };
}
