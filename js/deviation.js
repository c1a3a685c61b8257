// DeviationMap: samples x layers heatmap of kNN-deviation z-scores. Rows are samples (in the
// order the kernel sorted them), columns are layers; each row's divergence layer is marked.
// Many rows share a pixel row when there are more samples than pixels (the largest |z| shows).
import { decodeArray } from './codecs.js';
import { zColour } from './colour.js';
import { fmt, line, makeRoot, makeTooltip, markDrawn } from './common.js';
import { NEIGHBOUR_COLOUR, currentNeighbours, markNeighbours, onNeighbours } from './neighbours.js';

const HEADER = 64;
// Colours of added sample groups, as in the embedding's rings.
const ADDED_COLOURS = ['#000000', '#d62728', '#9400d3', '#ff7f0e'];
const FOOTER = 4;
// Tallest pixel row one sample gets: a few selected samples stay rows, not stretched bands.
const MAX_ROW_HEIGHT = 14;
const ZMAX = 5;

/** Height in CSS pixels of one drawn row: `h` shared by min(h, n) rows, at most MAX_ROW_HEIGHT. */
export function rowHeight(h, n) {
  return n > 0 ? Math.min(MAX_ROW_HEIGHT, h / Math.min(h, n)) : 0;
}

/** The footer text: each layer's AUROC, named and separated ("fc1 AUROC 0.82 · fc2 AUROC 0.83"). */
export function aurocFooter(layers, auroc) {
  const parts = layers.map((name, l) => `${name} ${Number.isFinite(auroc[l]) ? auroc[l].toFixed(2) : '—'}`);
  return parts.length ? `AUROC of mistakes vs reference: ${parts.join(' · ')}` : '';
}

/** Rows [start, end) drawn in pixel row `p` of `h` when `n` rows share the height. */
export function rowsOfPixel(p, h, n) {
  return [Math.floor((p * n) / h), Math.max(Math.floor((p * n) / h) + 1, Math.floor(((p + 1) * n) / h))];
}

function render({ model, el }) {
  const { body, cleanup: rootCleanup } = makeRoot(el, 'deviation', model);
  const title = line('', 'gw-title');
  const controls = document.createElement('div');
  controls.className = 'gw-controls';
  const sort = document.createElement('select');
  sort.className = 'gw-sort';
  for (const [value, text] of [
    ['divergence', 'sort: divergence layer'],
    ['max_z', 'sort: largest z'],
    ['label', 'sort: label'],
    ['index', 'sort: index'],
  ]) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    sort.appendChild(o);
  }
  const thr = document.createElement('input');
  thr.type = 'number';
  thr.step = '0.5';
  thr.min = '0.5';
  thr.max = '5';
  thr.className = 'gw-threshold';
  const thrLabel = document.createElement('label');
  thrLabel.append('threshold z > ', thr);
  controls.append(sort, thrLabel);
  const frame = document.createElement('div');
  frame.className = 'gw-frame';
  const width = model.get('width');
  const height = model.get('size');
  const dpr = window.devicePixelRatio || 1;
  const canvas = document.createElement('canvas');
  canvas.className = 'gw-canvas';
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  frame.style.width = `${width}px`;
  frame.style.height = `${height}px`;
  frame.appendChild(canvas);
  // Keys: the z colour scale and the divergence marker; the per-layer AUROC footer.
  const key = document.createElement('div');
  key.className = 'gw-legend gw-deviation-key';
  const bar = document.createElement('span');
  bar.className = 'gw-colourbar';
  bar.style.background = `linear-gradient(to right, ${[-5, -2.5, 0, 2.5, 5].map((v) => zColour(v, ZMAX)).join(', ')})`;
  const marker = document.createElement('span');
  marker.className = 'gw-divergence-mark';
  const zKey = document.createElement('span');
  zKey.className = 'gw-legend-item';
  zKey.append(line('z', 'gw-legend-title'), line(`≤ −${ZMAX}`, 'gw-legend-tick'), bar, line(`≥ ${ZMAX}`, 'gw-legend-tick'));
  const divKey = document.createElement('span');
  divKey.className = 'gw-legend-item';
  const divText = document.createElement('span');
  divKey.append(marker, divText);
  key.append(zKey, divKey);
  const footer = line('', 'gw-footer');
  for (const box of [title, key, footer]) box.style.maxWidth = `${width}px`;
  body.append(title, controls, frame, key, footer);
  const tooltip = makeTooltip(frame);
  const ctx = canvas.getContext('2d');

  function data() {
    const layers = model.get('layer_names');
    const rows = decodeArray(model.get('row_index'), 'int32').data;
    const z = decodeArray(model.get('z'), 'float32'); // [n, L], row r = rows[r]
    const div = decodeArray(model.get('divergence'), 'int32').data;
    const L = layers.length;
    const n = rows.length;
    const ready = z.shape.length === 2 && z.shape[0] === n && z.shape[1] === L && div.length === n;
    return { layers, rows, z: z.data, div, L, n, ready };
  }

  function geometry(L) {
    const colW = L ? width / L : width;
    return { colW, top: HEADER, h: height - HEADER - FOOTER };
  }

  function paint() {
    const { layers, rows, z, div, L, n, ready } = data();
    const { colW, top, h } = geometry(L);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = '#222';
    ctx.font = '11px sans-serif';
    const current = model.get('layer');
    layers.forEach((name, l) => {
      ctx.save();
      ctx.translate(l * colW + colW / 2, top - 4);
      ctx.rotate(-Math.PI / 4);
      ctx.font = name === current ? 'bold 11px sans-serif' : '11px sans-serif';
      ctx.fillText(name.length > 14 ? `${name.slice(0, 13)}…` : name, 0, 0);
      ctx.restore();
    });
    if (n === 0 || !ready) {
      markDrawn(el, model.get('revision'));
      return;
    }
    const pixRows = Math.min(h, n);
    const rowH = rowHeight(h, n);
    for (let p = 0; p < pixRows; p++) {
      const [a, b] = rowsOfPixel(p, pixRows, n);
      for (let l = 0; l < L; l++) {
        let best = 0;
        for (let r = a; r < b; r++) {
          const v = z[r * L + l];
          if (Math.abs(v) > Math.abs(best)) best = v;
        }
        ctx.fillStyle = zColour(best);
        ctx.fillRect(l * colW, top + p * rowH, colW + 0.5, rowH + 0.5);
      }
      if (b - a === 1 && div[a] >= 0) {
        ctx.fillStyle = '#000';
        const cy = top + (p + 0.5) * rowH;
        ctx.fillRect(div[a] * colW + colW / 2 - 2, cy - Math.max(0.5, Math.min(2, rowH / 2)), 4, Math.max(1, Math.min(4, rowH)));
      } else if (b - a > 1) {
        // Mark the most common divergence layer of the rows sharing this pixel.
        const counts = new Array(L).fill(0);
        for (let r = a; r < b; r++) if (div[r] >= 0) counts[div[r]]++;
        const l = counts.indexOf(Math.max(...counts));
        if (counts[l] > 0) {
          ctx.fillStyle = '#000';
          ctx.fillRect(l * colW + colW / 2 - 1.5, top + p * rowH, 3, Math.max(1, rowH));
        }
      }
    }
    const ci = layers.indexOf(current);
    if (ci >= 0) {
      ctx.strokeStyle = '#111';
      ctx.lineWidth = 2;
      ctx.strokeRect(ci * colW + 1, top, colW - 2, pixRows * rowH);
    }
    const sel = new Set(model.get('selection'));
    if (sel.size && sel.size < n) {
      ctx.fillStyle = 'rgba(0,0,0,0.8)';
      for (let p = 0; p < pixRows; p++) {
        const [a, b] = rowsOfPixel(p, pixRows, n);
        for (let r = a; r < b; r++) {
          if (sel.has(rows[r])) {
            ctx.fillRect(0, top + p * rowH, 3, Math.max(1, rowH));
            break;
          }
        }
      }
    }
    const hovered = model.get('hovered');
    if (hovered >= 0) {
      const r = rows.indexOf(hovered);
      if (r >= 0) {
        const p = Math.min(pixRows - 1, Math.floor((r * pixRows) / n));
        ctx.strokeStyle = '#000';
        ctx.lineWidth = 1.5;
        ctx.strokeRect(0.75, top + p * rowH - 1, width - 1.5, Math.max(2, rowH) + 2);
      }
    }
    drawAddedGroups(pixRows, rowH, n, top);
    drawNeighbourRows(rows, pixRows, rowH, n, top);
    markDrawn(el, model.get('revision'));
  }

  // The hovered or clicked sample's k nearest neighbours: a coloured tick at the right end of their rows.
  function drawNeighbourRows(rows, pixRows, rowH, n, top) {
    const { of, idx } = currentNeighbours(model);
    const want = new Set(idx);
    let drawn = 0;
    ctx.fillStyle = NEIGHBOUR_COLOUR;
    for (let r = 0; r < n && want.size; r++) {
      if (!want.has(rows[r])) continue;
      const p = Math.min(pixRows - 1, Math.floor((r * pixRows) / n));
      ctx.fillRect(width - 6, top + p * rowH, 6, Math.max(2, rowH));
      drawn++;
    }
    markNeighbours(el, of, drawn);
  }

  // Added sample groups (Session.add_samples): rows after the samples, under a line with the group's name.
  function drawAddedGroups(pixRows, rowH, n, top) {
    const groups = model.get('added_groups');
    groups.forEach((g, gi) => {
      const y0 = top + Math.floor((g.start * pixRows) / n) * rowH;
      const y1 = top + Math.min(pixRows, Math.ceil(((g.start + g.count) * pixRows) / n)) * rowH;
      ctx.fillStyle = ADDED_COLOURS[gi % ADDED_COLOURS.length];
      ctx.fillRect(0, y0 - 1, width, 2);
      ctx.fillRect(width - 5, y0, 5, Math.max(2, y1 - y0));
      ctx.font = 'bold 10px sans-serif';
      ctx.textAlign = 'right';
      ctx.fillText(`${g.name} (${g.count} added, k=${g.k})`, width - 8, Math.max(top + 10, y0 - 3));
      ctx.textAlign = 'start';
    });
    el.dataset.gwAddedRows = String(groups.reduce((a, g) => a + g.count, 0));
  }

  function addedName(row) {
    const g = model.get('added_groups').find((gr) => row >= gr.start && row < gr.start + gr.count);
    return g ? `${g.name} #${row - g.start}` : 'added';
  }

  function rowAt(e) {
    const { rows, z, div, L, n, ready } = data();
    const r0 = canvas.getBoundingClientRect();
    const x = e.clientX - r0.left;
    const y = e.clientY - r0.top;
    const { colW, top, h } = geometry(L);
    if (n === 0 || !ready || y < top || y >= top + h) return null;
    const pixRows = Math.min(h, n);
    const rowH = rowHeight(h, n);
    if (y >= top + pixRows * rowH) return null;
    const p = Math.min(pixRows - 1, Math.floor((y - top) / rowH));
    const [a, b] = rowsOfPixel(p, pixRows, n);
    const l = Math.min(L - 1, Math.max(0, Math.floor(x / colW)));
    let best = a;
    for (let r = a; r < b; r++) if (Math.abs(z[r * L + l]) > Math.abs(z[best * L + l])) best = r;
    return { row: best, sample: rows[best], layer: l, z: z[best * L + l], div: div[best], x, y };
  }

  canvas.addEventListener('mousemove', (e) => {
    const hit = rowAt(e);
    if (!hit) {
      tooltip.hide();
      return;
    }
    const names = model.get('layer_names');
    tooltip.show(hit.x, hit.y, [
      line(hit.sample >= 0 ? `#${hit.sample}` : addedName(hit.row), 'gw-tip-index'),
      line(`${names[hit.layer]}: z = ${fmt(hit.z)}`),
      line(`diverges at: ${hit.div >= 0 ? names[hit.div] : '—'}`),
    ]);
    if (model.get('hovered') !== Math.max(-1, hit.sample)) {
      model.set('hovered', Math.max(-1, hit.sample));
      model.save_changes();
    }
  });
  canvas.addEventListener('mouseleave', () => {
    tooltip.hide();
    model.set('hovered', -1);
    model.save_changes();
  });
  canvas.addEventListener('click', (e) => {
    const hit = rowAt(e);
    if (!hit || hit.sample < 0) return;
    model.set('selection', [hit.sample]);
    model.save_changes();
  });
  sort.addEventListener('change', () => {
    model.set('sort_by', sort.value);
    model.save_changes();
  });
  thr.addEventListener('change', () => {
    const v = Number(thr.value);
    if (Number.isFinite(v) && v > 0) {
      model.set('threshold', v);
      model.save_changes();
    }
  });

  const syncControls = () => {
    sort.value = model.get('sort_by');
    thr.value = String(model.get('threshold'));
    title.textContent = model.get('title');
    divText.textContent = `first layer with z > ${fmt(model.get('threshold'))} (divergence)`;
    footer.textContent = aurocFooter(model.get('layer_names'), model.get('auroc'));
  };
  // Every drawn trait redraws on its own change (coalesced: one redraw per batched update).
  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      syncControls();
      paint();
    });
  };
  const onRevision = schedule;
  const DRAWN = ['title', 'sort_by', 'threshold', 'auroc', 'layer_names', 'z', 'row_index', 'divergence'];
  for (const name of DRAWN) model.on(`change:${name}`, schedule);
  const onLinked = () => paint();
  model.on('change:revision', onRevision);
  model.on('change:selection', onLinked);
  model.on('change:layer', onLinked);
  model.on('change:hovered', onLinked);
  const neighboursCleanup = onNeighbours(model, () => paint());
  syncControls();
  paint();
  return () => {
    rootCleanup();
    model.off('change:revision', onRevision);
    for (const name of DRAWN) model.off(`change:${name}`, schedule);
    model.off('change:selection', onLinked);
    model.off('change:layer', onLinked);
    model.off('change:hovered', onLinked);
    neighboursCleanup();
  };
}

export default { render };
