// DOM helpers shared by the views: the root element contract (data-gw-view, data-gw-drawn),
// the visible status line (.gw-status), and the tooltip (.gw-tooltip).

import { categoryColour } from './colour.js';
import { answerSnapshots } from './snapshot.js';
import { paintStatus } from './status.js';

/** Prepare `el` as a view root: data-gw-view, a header with a .gw-status line, and a body. */
export function makeRoot(el, view, model) {
  el.classList.add('gw-view', `gw-view-${view}`);
  el.dataset.gwView = view;
  el.dataset.gwRevision = String(model.get('revision'));
  const body = document.createElement('div');
  body.className = 'gw-body';
  const status = document.createElement('div');
  status.className = 'gw-status';
  el.replaceChildren(body, status);
  const showStatus = () => {
    const s = model.get('status');
    const rev = model.get('revision');
    let text = model.get('message');
    if (s === 'idle' && rev === 0 && !text) text = 'No data yet: if this notebook was reopened, re-run the cell.';
    paintStatus(status, s, text, model.get('progress'));
    el.dataset.gwStatus = s;
  };
  const onRevision = () => {
    el.dataset.gwRevision = String(model.get('revision'));
    showStatus();
  };
  model.on('change:status', showStatus);
  model.on('change:message', showStatus);
  model.on('change:progress', showStatus);
  model.on('change:revision', onRevision);
  showStatus();
  // view.save_png(): the kernel's {type: "snapshot"} message is answered with this root as a PNG.
  const stopSnapshots = answerSnapshots(model, () => el);
  const cleanup = () => {
    stopSnapshots();
    model.off('change:status', showStatus);
    model.off('change:message', showStatus);
    model.off('change:progress', showStatus);
    model.off('change:revision', onRevision);
  };
  return { body, status, cleanup };
}

/**
 * Mark the root as having drawn `revision` (after the browser has painted it). With `since`
 * (performance.now() when the update arrived), data-gw-draw-ms records the browser-side time.
 */
export function markDrawn(el, revision, since = null) {
  requestAnimationFrame(() => {
    if (since !== null) el.dataset.gwDrawMs = (performance.now() - since).toFixed(1);
    el.dataset.gwDrawn = String(revision);
  });
}

/** A tooltip element (class gw-tooltip) positioned inside `parent`. */
export function makeTooltip(parent) {
  const tip = document.createElement('div');
  tip.className = 'gw-tooltip';
  tip.hidden = true;
  parent.appendChild(tip);
  return {
    el: tip,
    show(x, y, children) {
      tip.replaceChildren(...children);
      tip.hidden = false;
      const pw = parent.clientWidth || 400;
      const ph = parent.clientHeight || 400;
      tip.style.left = `${Math.min(x + 12, Math.max(0, pw - tip.offsetWidth - 4))}px`;
      // Below the cursor when it fits, else above it (the frame clips what overflows).
      const below = y + 12 + tip.offsetHeight <= ph;
      tip.style.top = `${below ? y + 12 : Math.max(0, y - 12 - tip.offsetHeight)}px`;
    },
    hide() {
      tip.hidden = true;
    },
  };
}

/** Legend entries (colour swatch + name) for categories coloured by categoryColour(i). */
export function categoryLegendItems(names) {
  return names.map((name, i) => {
    const item = document.createElement('span');
    item.className = 'gw-legend-item';
    const sw = document.createElement('span');
    sw.className = 'gw-swatch';
    sw.style.background = categoryColour(i);
    item.append(sw, document.createTextNode(name));
    return item;
  });
}

/** A text line element. */
export function line(text, cls = '') {
  const d = document.createElement('div');
  if (cls) d.className = cls;
  d.textContent = text;
  return d;
}

/** Format a number for display. */
export function fmt(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toFixed(a >= 100 ? 1 : 3);
}

/** Draw a grey image thumbnail (uint8, h x w or h x w x 3) into a new canvas, scaled up. */
export function thumbnail(pixels, shape, scale = 6) {
  const [h, w, ch = 1] = shape;
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  c.className = 'gw-thumb';
  c.style.width = `${w * scale}px`;
  c.style.height = `${h * scale}px`;
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = ch === 3 ? pixels[3 * i + k] : 255 - pixels[i];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
