// @ts-check
/**
 * Pointer and keyboard input on the plot, turned into cell-level intents (hover, pin, brush,
 * wheel, keyboard cursor). It knows geometry only through `geometry()`, and draws nothing
 * itself: the handlers decide what to show.
 */

/**
 * @typedef {object} Cell
 * @property {number} slot X slot in the view
 * @property {number} k displayed row position
 */

/**
 * @typedef {object} PlotHandlers
 * @property {() => { width: number, height: number, slots: number, rows: number }|null} geometry
 * @property {(cell: Cell|null, x: number, y: number, fromKeyboard: boolean) => void} hover
 * @property {(cell: Cell, x: number, y: number) => void} pin
 * @property {() => void} unpin
 * @property {(rect: { x: number, y: number, w: number, h: number }|null) => void} brushPreview
 * @property {(sel: { slot0: number, slot1: number, k0: number, k1: number }) => void} brush
 * @property {(factor: number, atFraction: number) => void} wheel factor < 1 zooms in
 * @property {() => void} back
 * @property {() => void} reset
 */

/** Drags smaller than this (CSS px, both axes) are clicks, not brushes. */
const CLICK_SLOP = 4;

/**
 * @param {HTMLElement} plot
 * @param {PlotHandlers} h
 */
export function bindPlot(plot, h) {
  /** @type {{ x: number, y: number }|null} */
  let down = null;
  /** @type {Cell|null} keyboard cursor */
  let cursor = null;

  /** @param {PointerEvent|WheelEvent|MouseEvent} e */
  const local = (e) => {
    const r = plot.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  };
  /** @param {number} x @param {number} y @returns {Cell|null} */
  const cellAt = (x, y) => {
    const g = h.geometry();
    if (!g || g.rows === 0 || x < 0 || y < 0 || x >= g.width || y >= g.height) return null;
    return { slot: Math.floor((x / g.width) * g.slots), k: Math.floor((y / g.height) * g.rows) };
  };
  /** @param {Cell} c */
  const centreOf = (c) => {
    const g = h.geometry();
    if (!g) return { x: 0, y: 0 };
    return { x: ((c.slot + 0.5) / g.slots) * g.width, y: ((c.k + 0.5) / g.rows) * g.height };
  };

  plot.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    down = local(e);
    plot.setPointerCapture(e.pointerId);
  });
  plot.addEventListener('pointermove', (e) => {
    const p = local(e);
    if (down) {
      const g = h.geometry();
      const x = Math.max(0, Math.min(p.x, g?.width ?? p.x));
      const y = Math.max(0, Math.min(p.y, g?.height ?? p.y));
      if (Math.abs(x - down.x) > CLICK_SLOP || Math.abs(y - down.y) > CLICK_SLOP) {
        h.brushPreview({ x: Math.min(x, down.x), y: Math.min(y, down.y), w: Math.abs(x - down.x), h: Math.abs(y - down.y) });
      }
      return;
    }
    h.hover(cellAt(p.x, p.y), p.x, p.y, false);
  });
  plot.addEventListener('pointerleave', () => {
    if (!down) h.hover(null, 0, 0, false);
  });
  plot.addEventListener('pointerup', (e) => {
    if (!down) return;
    const start = down;
    down = null;
    h.brushPreview(null);
    const p = local(e);
    const g = h.geometry();
    if (!g) return;
    if (Math.abs(p.x - start.x) <= CLICK_SLOP && Math.abs(p.y - start.y) <= CLICK_SLOP) {
      const c = cellAt(p.x, p.y);
      if (c) {
        cursor = c;
        h.pin(c, p.x, p.y);
      } else {
        h.unpin();
      }
      return;
    }
    const a = cellAt(Math.max(0, Math.min(start.x, p.x)), Math.max(0, Math.min(start.y, p.y)));
    const b = cellAt(Math.min(g.width - 0.01, Math.max(start.x, p.x)), Math.min(g.height - 0.01, Math.max(start.y, p.y)));
    if (a && b) h.brush({ slot0: a.slot, slot1: b.slot + 1, k0: a.k, k1: b.k + 1 });
  });
  plot.addEventListener('pointercancel', () => {
    down = null;
    h.brushPreview(null);
  });
  plot.addEventListener(
    'wheel',
    (e) => {
      const g = h.geometry();
      if (!g || e.deltaY === 0) return;
      e.preventDefault();
      const p = local(e);
      h.wheel(e.deltaY > 0 ? 1.25 : 0.8, Math.max(0, Math.min(1, p.x / g.width)));
    },
    { passive: false },
  );

  plot.addEventListener('keydown', (e) => {
    const g = h.geometry();
    if (!g || g.rows === 0) return;
    const step = e.shiftKey ? 10 : 1;
    const c = cursor ?? { slot: g.slots - 1, k: 0 };
    let moved = true;
    switch (e.key) {
      case 'ArrowLeft': c.slot = Math.max(0, c.slot - step); break;
      case 'ArrowRight': c.slot = Math.min(g.slots - 1, c.slot + step); break;
      case 'ArrowUp': c.k = Math.max(0, c.k - step); break;
      case 'ArrowDown': c.k = Math.min(g.rows - 1, c.k + step); break;
      case 'Home': c.slot = 0; break;
      case 'End': c.slot = g.slots - 1; break;
      default: moved = false;
    }
    if (moved) {
      e.preventDefault();
      cursor = c;
      const p = centreOf(c);
      h.hover(c, p.x, p.y, true);
      return;
    }
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      cursor = c;
      const p = centreOf(c);
      h.pin(c, p.x, p.y);
    } else if (e.key === 'Escape') {
      h.unpin();
    } else if (e.key === '+' || e.key === '=') {
      e.preventDefault();
      h.wheel(0.5, cursor ? (cursor.slot + 0.5) / g.slots : 1);
    } else if (e.key === '-' || e.key === '_') {
      e.preventDefault();
      h.wheel(2, cursor ? (cursor.slot + 0.5) / g.slots : 1);
    } else if (e.key === 'Backspace') {
      e.preventDefault();
      h.back();
    } else if (e.key === 'r' || e.key === 'R') {
      e.preventDefault();
      h.reset();
    }
  });

  return {
    /** Forgets the keyboard cursor (the view changed under it). */
    clearCursor() {
      cursor = null;
    },
  };
}
