// EmbeddingView: WebGL scatter (regl-scatterplot) of a layer's 2-D layout.
// Positions arrive normalised to [-1, 1] as one float32 [N, 2] array; a k/temperature move only
// sends new values (colours), so the cached positions are reused; a new layout of the same
// points animates from the old one.
import createScatterplot, { createRenderer } from 'regl-scatterplot';
import { decodeArray, splitXY } from './codecs.js';
import { encodeColours, scaleColours } from './colour.js';
import { pointSizeFor } from './points.js';
import { categoryLegendItems, fmt, line, makeRoot, makeTooltip, markDrawn, thumbnail } from './common.js';
import { markNeighbours, neighbourOverlay, neighbourRows, onNeighbours } from './neighbours.js';
import { createFallbackScatterplot, FALLBACK_MESSAGE, webglAvailable } from './fallback2d.js';

let sharedRenderer = null;
let rendererSize = 0;
function renderer(size) {
  // One WebGL context for every scatter on the page (browsers cap the number of contexts). Its
  // canvas is sized to the largest view, not the window: each frame is rendered at that size and
  // copied into the view's canvas, so a window-sized buffer would cost several times more.
  if (!sharedRenderer) {
    const canvas = document.createElement('canvas');
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(size * dpr);
    canvas.height = Math.round(size * dpr);
    sharedRenderer = createRenderer({ canvas });
    rendererSize = size;
  } else if (size > rendererSize) {
    sharedRenderer.resize(size, size);
    rendererSize = size;
  }
  return sharedRenderer;
}

function legend(model) {
  const box = document.createElement('div');
  box.className = 'gw-legend';
  const kind = model.get('color_kind');
  const title = line(model.get('color_label'), 'gw-legend-title');
  if (kind === 'categorical') {
    const items = categoryLegendItems(model.get('categories'));
    box.append(title, ...items);
  } else {
    const bar = document.createElement('span');
    bar.className = 'gw-colourbar';
    const stops = scaleColours(kind, 9);
    bar.style.background = `linear-gradient(to right, ${stops.join(', ')})`;
    const [lo, hi] = model.get('value_range');
    box.append(title, line(fmt(lo), 'gw-legend-tick'), bar, line(fmt(hi), 'gw-legend-tick'));
  }
  return box;
}

// Ring colours of added sample groups (distinct from the category palette's first colours).
const ADDED_COLOURS = ['#000000', '#d62728', '#9400d3', '#ff7f0e'];

/** Legend entries of the added sample groups: a ring and the group's name and size. */
function addedLegend(model) {
  return model.get('added_groups').map((g, gi) => {
    const item = document.createElement('span');
    item.className = 'gw-legend-item gw-legend-added';
    const ring = document.createElement('span');
    ring.className = 'gw-swatch';
    Object.assign(ring.style, {
      background: 'transparent', border: `2px solid ${ADDED_COLOURS[gi % ADDED_COLOURS.length]}`, borderRadius: '50%',
    });
    item.append(ring, document.createTextNode(`${g.name} (${g.count} added)`));
    return item;
  });
}

function render({ model, el }) {
  const { body, cleanup: rootCleanup } = makeRoot(el, 'embedding', model);
  const title = line('', 'gw-title');
  const frame = document.createElement('div');
  frame.className = 'gw-frame';
  const size = model.get('size');
  frame.style.width = `${size}px`;
  frame.style.height = `${size}px`;
  const canvas = document.createElement('canvas');
  canvas.className = 'gw-canvas';
  canvas.style.width = `${size}px`;
  canvas.style.height = `${size}px`;
  frame.appendChild(canvas);
  // Added sample groups (Session.add_samples): rings on a 2-D canvas over the WebGL points.
  const overlay = document.createElement('canvas');
  overlay.className = 'gw-added-overlay';
  const dprO = window.devicePixelRatio || 1;
  overlay.width = Math.round(size * dprO);
  overlay.height = Math.round(size * dprO);
  Object.assign(overlay.style, {
    position: 'absolute', left: '0', top: '0', width: `${size}px`, height: `${size}px`, pointerEvents: 'none',
  });
  frame.style.position = 'relative';
  frame.appendChild(overlay);
  // The hovered or clicked sample's k nearest neighbours (layer space): lines and rings over the points.
  const neighbourLayer = neighbourOverlay(model, size);
  frame.appendChild(neighbourLayer.canvas);
  const legendBox = document.createElement('div');
  body.append(title, frame, legendBox);
  const tooltip = makeTooltip(frame);

  // Without WebGL (disabled, blocked, no GPU) a 2-D canvas draws the points instead (js/fallback2d.js).
  let scatterplot = null;
  if (webglAvailable()) {
    try {
      scatterplot = createScatterplot({
        renderer: renderer(size),
        canvas,
        width: size,
        height: size,
        pointSize: pointSizeFor(model.get('point_size'), 0),
        backgroundColor: [1, 1, 1, 1],
        pointColorHover: [0, 0, 0, 1],
        pointColorActive: [0.1, 0.1, 0.1, 1],
        lassoColor: [0.1, 0.4, 0.9, 1],
        opacityInactiveScale: 0.35,
        actionKeyMap: { lasso: 'shift', rotate: 'alt' },
        // Events (pointover, select, view) in the input handler, not a task later: at 10^6 points
        // in software WebGL a redraw queued first delayed the tooltip by a whole frame.
        syncEvents: true,
      });
    } catch {
      scatterplot = null; // e.g. a context lost or refused after the probe
    }
  }
  if (!scatterplot) {
    scatterplot = createFallbackScatterplot({ canvas, width: size, height: size, pointSize: pointSizeFor(model.get('point_size'), 0) });
    const note = line(FALLBACK_MESSAGE, 'gw-fallback-note');
    Object.assign(note.style, { color: '#8a5a00', fontSize: '11px', maxWidth: `${size}px` });
    body.insertBefore(note, frame);
    el.dataset.gwRenderer = '2d';
  } else {
    el.dataset.gwRenderer = 'webgl';
  }

  // Exposed for debugging and browser tests (e.g. reading the camera); not part of the model.
  Object.defineProperty(el, 'gwScatterplot', { value: scatterplot, configurable: true });
  let xy = { x: new Float32Array(0), y: new Float32Array(0) };
  let n = 0;
  // While a first picture of M landmarks is shown, point i is sample rowsOf[i] (sample_indices);
  // otherwise point i is sample i (rowsOf null).
  let rowsOf = null;
  let rowOfSample = null;
  const sampleOf = (i) => (rowsOf ? rowsOf[i] : i);
  const rowOf = (sample) => (rowOfSample ? rowOfSample.get(sample) ?? -1 : sample);
  // A per-sample array as one value per point (gathered at the landmarks' samples while they are shown).
  let maxSample = -1;
  const perPoint = (arr) => (rowsOf && arr.length > maxSample ? Float32Array.from(rowsOf, (s) => arr[s]) : arr);
  // True if a per-sample array (labels, texts...) holds sample s.
  const holds = (arr, s) => (rowsOf ? arr.length > maxSample : arr.length === n) && s >= 0;
  let mouse = [0, 0];
  let destroyed = false;
  let drawChain = Promise.resolve();
  let applyingSelection = false;

  const currentSelection = () => model.get('selection').map(rowOf).filter((i) => i >= 0 && i < n);

  function updateTitle() {
    title.textContent = model.get('title');
  }

  let arrived = null;
  let positionsChanged = true;
  function draw({ transition = false } = {}) {
    const revision = model.get('revision');
    const since = arrived;
    const values = perPoint(decodeArray(model.get('values'), 'float32').data);
    const kind = model.get('color_kind');
    const [vmin, vmax] = model.get('value_range');
    const colours = values.length === n
      ? encodeColours(values, kind, vmin, vmax, model.get('categories').length)
      : { valueA: new Float32Array(n), pointColor: ['#4e79a7'], dataType: 'categorical' };
    scatterplot.set({ colorBy: 'valueA', pointColor: colours.pointColor, pointSize: pointSizeFor(model.get('point_size'), n) });
    legendBox.replaceChildren(legend(model), ...addedLegend(model));
    const points = { x: xy.x, y: xy.y, valueA: colours.valueA };
    const options = { zDataType: colours.dataType, preventFilterReset: true };
    if (transition) Object.assign(options, { transition: true, transitionDuration: 600 });
    // Colours only: the points did not move, so reuse the spatial index instead of rebuilding it.
    const index = positionsChanged ? undefined : scatterplot.get('spatialIndex');
    if (index) options.spatialIndex = index;
    positionsChanged = false;
    const selection = currentSelection();
    drawChain = drawChain
      .then(() => (n === 0 ? scatterplot.clear() : scatterplot.draw(points, options)))
      .then(() => {
        if (destroyed) return;
        if (selection.length) {
          applyingSelection = true;
          scatterplot.select(selection, { preventEvent: true });
          applyingSelection = false;
        }
        drawAdded();
        drawNeighbours();
        markDrawn(el, revision, transition ? null : since);
      })
      .catch((err) => {
        el.querySelector('.gw-status').textContent = `error: drawing failed: ${err}`;
        el.querySelector('.gw-status').dataset.status = 'error';
        el.querySelector('.gw-status').hidden = false;
      });
  }

  // Screen position of a normalised point under the current camera (square canvas: no aspect projection).
  function toScreen(x, y) {
    const v = scatterplot.get('cameraView');
    const cx = v[0] * x + v[4] * y + v[12];
    const cy = v[1] * x + v[5] * y + v[13];
    return [((cx + 1) / 2) * size, ((1 - cy) / 2) * size];
  }

  function drawAdded() {
    const ctx = overlay.getContext('2d');
    ctx.setTransform(dprO, 0, 0, dprO, 0, 0);
    ctx.clearRect(0, 0, size, size);
    const groups = model.get('added_groups');
    const { data } = decodeArray(model.get('added_positions'), 'float32');
    let start = 0;
    let drawn = 0;
    const r = Math.max(4, model.get('point_size') * 1.6);
    groups.forEach((g, gi) => {
      ctx.strokeStyle = ADDED_COLOURS[gi % ADDED_COLOURS.length];
      ctx.lineWidth = 2;
      for (let i = start; i < start + g.count && 2 * i + 1 < data.length; i++) {
        const [px, py] = toScreen(data[2 * i], data[2 * i + 1]);
        ctx.beginPath();
        ctx.arc(px, py, r, 0, 2 * Math.PI);
        ctx.stroke();
        drawn++;
      }
      start += g.count;
    });
    el.dataset.gwAdded = String(drawn);
  }

  function drawNeighbours() {
    const at = (sample) => {
      const i = rowOf(sample);
      return i >= 0 && i < n ? toScreen(xy.x[i], xy.y[i]) : null;
    };
    markNeighbours(el, model.get('neighbour_of'), neighbourLayer.draw(at, Math.max(4, model.get('point_size') * 1.4)));
  }

  // The tooltip shown (sample and its rows), so the neighbour list can be added when it arrives.
  let tip = { index: -1, rows: [] };
  function tipRows(i) {
    const labels = decodeArray(model.get('labels'), 'int32').data;
    // Sample count: n, or while landmarks are shown the length of the per-sample arrays.
    return neighbourRows(model, i, rowsOf ? labels.length : n, {
      labels,
      names: model.get('class_names'),
      texts: model.get('texts'),
    });
  }
  const neighboursCleanup = onNeighbours(model, () => {
    drawNeighbours();
    if (!tooltip.el.hidden && tip.index >= 0) tooltip.show(mouse[0], mouse[1], [...tip.rows, ...tipRows(tip.index)]);
  });

  function onPositions() {
    const { shape, data: flat } = decodeArray(model.get('positions'), 'float32');
    const newN = shape.length === 2 ? shape[0] : 0;
    const transition = newN === n && n > 0 && model.get('animate');
    xy = splitXY(flat);
    n = newN;
    const rows = decodeArray(model.get('sample_indices'), 'int32').data;
    rowsOf = rows.length === n && n > 0 ? rows : null;
    rowOfSample = rowsOf ? new Map(Array.from(rowsOf, (sample, i) => [sample, i])) : null;
    maxSample = rowsOf ? rowsOf.reduce((a, b) => Math.max(a, b), -1) : -1;
    positionsChanged = true;
    draw({ transition });
  }

  // Traits arrive in one batched update; redraw once per revision.
  let pendingPositions = false;
  const onPositionsChange = () => {
    pendingPositions = true;
  };
  const onRevision = () => {
    arrived = performance.now();
    // Wait for the rest of the batched update (positions may change after revision).
    queueMicrotask(() => {
      updateTitle();
      if (pendingPositions) {
        pendingPositions = false;
        onPositions();
      } else {
        draw();
      }
    });
  };
  const onSelection = () => {
    if (applyingSelection) return;
    const sel = currentSelection();
    if (sel.length) scatterplot.select(sel, { preventEvent: true });
    else scatterplot.deselect({ preventEvent: true });
  };
  const onHovered = () => {
    const h = rowOf(model.get('hovered'));
    if (h >= 0 && h < n) scatterplot.hover(h, { preventEvent: true });
    else scatterplot.hover(undefined, { preventEvent: true });
  };
  const onPointSize = () => scatterplot.set({ pointSize: pointSizeFor(model.get('point_size'), n) });

  model.on('change:positions', onPositionsChange);
  model.on('change:revision', onRevision);
  model.on('change:selection', onSelection);
  model.on('change:hovered', onHovered);
  model.on('change:point_size', onPointSize);
  scatterplot.subscribe('view', () => {
    drawAdded();
    drawNeighbours();
  });
  // Drawn traits redraw on their own change, not only with the next revision.
  model.on('change:title', updateTitle);

  scatterplot.subscribe('select', ({ points }) => {
    if (applyingSelection) return;
    model.set('selection', Array.from(points, sampleOf));
    model.save_changes();
  });
  scatterplot.subscribe('deselect', () => {
    if (applyingSelection || model.get('selection').length === 0) return;
    model.set('selection', []);
    model.save_changes();
  });
  // Keep shift+drag (lasso) away from JupyterLab's notebook, which would take it as a cell-range
  // selection and capture the following mousemove/mouseup events.
  frame.addEventListener('mousedown', (e) => e.stopPropagation());
  frame.addEventListener('mousemove', (e) => {
    const r = frame.getBoundingClientRect();
    mouse = [e.clientX - r.left, e.clientY - r.top];
  });
  scatterplot.subscribe('pointover', (i) => {
    const labels = decodeArray(model.get('labels'), 'int32').data;
    const preds = decodeArray(model.get('predictions'), 'int32').data;
    const values = decodeArray(model.get('values'), 'float32').data;
    const names = model.get('class_names');
    const cls = (c) => (c >= 0 && c < names.length ? names[c] : String(c));
    const s = sampleOf(i); // per-sample arrays are indexed by sample (point i is sample s)
    const rows = [line(`#${s}`, 'gw-tip-index')];
    const texts = model.get('texts');
    if (holds(texts, s) && texts[s]) {
      const t = line(texts[s], 'gw-tip-text');
      Object.assign(t.style, { maxWidth: '280px', whiteSpace: 'normal', fontStyle: 'italic' });
      rows.push(t);
    }
    if (holds(labels, s)) rows.push(line(`label: ${cls(labels[s])}`));
    if (holds(preds, s)) rows.push(line(`prediction: ${cls(preds[s])}`));
    let colourKey = null;
    if (holds(values, s) && !['label', 'prediction'].includes(model.get('color_label'))) {
      const kind = model.get('color_kind');
      const cats = model.get('categories');
      const v = kind === 'categorical' ? cats[Math.round(values[s])] ?? values[s] : fmt(values[s]);
      colourKey = `${model.get('color_label')}: `;
      rows.push(line(`${colourKey}${v}`));
    }
    const details = model.get('details');
    if (holds(details, s) && details[s]) {
      // A metadata column that is also the colouring is already shown by the line above.
      for (const d of details[s].split('\n')) if (!colourKey || !d.startsWith(colourKey)) rows.push(line(d));
    }
    const images = decodeArray(model.get('images'), 'uint8');
    if (images.shape.length >= 3 && s < images.shape[0]) {
      const shape = images.shape.slice(1); // [H, W] or [H, W, 3]
      const per = shape.reduce((a, b) => a * b, 1);
      rows.push(thumbnail(images.data.subarray(s * per, (s + 1) * per), shape));
    }
    tip = { index: s, rows };
    tooltip.show(mouse[0], mouse[1], [...rows, ...tipRows(s)]);
    model.set('hovered', s);
    model.save_changes();
  });
  scatterplot.subscribe('pointout', () => {
    tooltip.hide();
    tip = { index: -1, rows: [] };
    if (model.get('hovered') !== -1) {
      model.set('hovered', -1);
      model.save_changes();
    }
  });

  updateTitle();
  if (decodeArray(model.get('positions'), 'float32').data.length) onPositions();
  else markDrawn(el, model.get('revision'));

  return () => {
    destroyed = true;
    rootCleanup();
    model.off('change:positions', onPositionsChange);
    model.off('change:revision', onRevision);
    model.off('change:selection', onSelection);
    model.off('change:hovered', onHovered);
    model.off('change:point_size', onPointSize);
    model.off('change:title', updateTitle);
    neighboursCleanup();
    scatterplot.destroy();
  };
}

export default { render };
