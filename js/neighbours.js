// Neighbour highlight shared by the views: the k nearest neighbours (in the current layer's
// space, computed in the kernel) of the hovered or clicked sample. The model carries
// neighbour_of (the sample, -1 for none), neighbours (indices, nearest first) and
// neighbour_distances; each view draws them its own way and marks its root with
// data-gw-neighbour-of and data-gw-neighbours (how many it drew).
import { fmt, line } from './common.js';

export const NEIGHBOUR_COLOUR = '#e4007c';
const NEIGHBOUR_TRAITS = ['neighbour_of', 'neighbours', 'neighbour_distances'];

/** The highlighted neighbours of the model: { of, idx, dist } (idx empty when there is none). */
export function currentNeighbours(model) {
  const of = model.get('neighbour_of');
  const idx = of >= 0 ? model.get('neighbours') : [];
  const dist = model.get('neighbour_distances');
  return { of, idx, dist: dist.length === idx.length ? dist : idx.map(() => NaN) };
}

/** Record what a view drew on its root element (for tests and debugging). */
export function markNeighbours(el, of, drawn) {
  el.dataset.gwNeighbourOf = String(of);
  el.dataset.gwNeighbours = String(drawn);
}

/** Call `fn` (coalesced, once per batched update) whenever the neighbour traits change; returns the cleanup. */
export function onNeighbours(model, fn) {
  let scheduled = false;
  const handler = () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      fn();
    });
  };
  for (const name of NEIGHBOUR_TRAITS) model.on(`change:${name}`, handler);
  return () => {
    for (const name of NEIGHBOUR_TRAITS) model.off(`change:${name}`, handler);
  };
}

/**
 * Tooltip lines listing the neighbours of sample `i` (none unless they are the highlighted ones):
 * index, distance, label (class name) and text when the view has texts.
 */
export function neighbourRows(model, i, n, { labels = null, names = [], texts = [], max = 12 } = {}) {
  const { of, idx, dist } = currentNeighbours(model);
  if (of !== i || idx.length === 0) return [];
  const where = model.get('layer') ? ` in ${model.get('layer')}` : '';
  const rows = [line(`${idx.length} nearest${where}:`, 'gw-tip-neighbours-title')];
  const cls = (c) => (c >= 0 && c < names.length ? names[c] : String(c));
  idx.slice(0, max).forEach((j, r) => {
    let text = `#${j} · d=${fmt(dist[r])}`;
    if (labels && labels.length === n) text += ` · ${cls(labels[j])}`;
    if (texts.length === n && texts[j]) text += ` · ${texts[j].length > 40 ? `${texts[j].slice(0, 39)}…` : texts[j]}`;
    const row = line(text, 'gw-tip-neighbour');
    row.style.color = NEIGHBOUR_COLOUR;
    rows.push(row);
  });
  if (idx.length > max) rows.push(line(`… and ${idx.length - max} more`, 'gw-tip-neighbour'));
  return rows;
}

/**
 * A 2-D canvas over a scatter: a line from the focus sample to each neighbour and a ring on each
 * neighbour, in screen coordinates given by `toScreen(i)` (null for a sample not drawn).
 * Returns { canvas, draw(toScreen, radius) -> number of neighbours drawn }.
 */
export function neighbourOverlay(model, size) {
  const canvas = document.createElement('canvas');
  canvas.className = 'gw-neighbour-overlay';
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(size * dpr);
  canvas.height = Math.round(size * dpr);
  Object.assign(canvas.style, {
    position: 'absolute', left: '0', top: '0', width: `${size}px`, height: `${size}px`, pointerEvents: 'none',
  });
  function draw(toScreen, radius = 5) {
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, size, size);
    const { of, idx } = currentNeighbours(model);
    const from = of >= 0 ? toScreen(of) : null;
    if (!from) return 0;
    let drawn = 0;
    ctx.strokeStyle = NEIGHBOUR_COLOUR;
    ctx.globalAlpha = 0.75;
    ctx.lineWidth = 1.2;
    for (const j of idx) {
      const to = toScreen(j);
      if (!to) continue;
      ctx.beginPath();
      ctx.moveTo(from[0], from[1]);
      ctx.lineTo(to[0], to[1]);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.lineWidth = 2;
    for (const j of idx) {
      const to = toScreen(j);
      if (!to) continue;
      ctx.beginPath();
      ctx.arc(to[0], to[1], radius, 0, 2 * Math.PI);
      ctx.stroke();
      drawn++;
    }
    ctx.fillStyle = NEIGHBOUR_COLOUR;
    ctx.beginPath();
    ctx.arc(from[0], from[1], radius * 0.6, 0, 2 * Math.PI);
    ctx.fill();
    return drawn;
  }
  return { canvas, draw };
}

/**
 * Rings on the neighbours (and a dot on the focus sample) among points drawn at plane coordinates
 * `pts` ([M, 2] flat) whose sample indices are `ids`; `toPixel(x, y)` gives canvas pixels. Returns
 * how many neighbours were drawn (those among the points and inside the canvas).
 */
export function drawNeighbourRings(ctx, model, pts, ids, toPixel, size) {
  const { of, idx } = currentNeighbours(model);
  if (of < 0 || idx.length === 0) return 0;
  const want = new Set(idx);
  const inside = ([px, py]) => px >= -4 && py >= -4 && px <= size + 4 && py <= size + 4;
  let drawn = 0;
  ctx.save();
  ctx.globalAlpha = 1;
  ctx.strokeStyle = NEIGHBOUR_COLOUR;
  ctx.fillStyle = NEIGHBOUR_COLOUR;
  ctx.lineWidth = 2;
  for (let i = 0; i < ids.length && 2 * i + 1 < pts.length; i++) {
    const isFocus = ids[i] === of;
    if (!isFocus && !want.has(ids[i])) continue;
    const p = toPixel(pts[2 * i], pts[2 * i + 1]);
    if (!inside(p)) continue;
    ctx.beginPath();
    ctx.arc(p[0], p[1], isFocus ? 3 : 5.5, 0, 2 * Math.PI);
    if (isFocus) ctx.fill();
    else {
      ctx.stroke();
      drawn++;
    }
  }
  ctx.restore();
  return drawn;
}
