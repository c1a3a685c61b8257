// SliceView: a decision slice as an image (class colour, confidence as lightness), the data
// projected onto the plane (faded with their distance from it), and the three anchors. A
// temperature move only sends new confidences; a click sets `clicked` = [alpha, beta] and the
// kernel picks a new anchor. Hovering a sample describes the sample itself (its label, its
// prediction, its distance to the plane), then the model's decision on the plane at that spot.
// A regression slice (mode "regression") shows the predicted value on the viridis scale with a
// colour bar, the samples coloured by their target on the same scale.
import { decodeArray, pixelToPlane, planeToPixel } from './codecs.js';
import { categoryColour, scaleColour, scaleColours, sliceRGBA, valueRGBA } from './colour.js';
import { categoryLegendItems, fmt, line, makeRoot, makeTooltip, markDrawn } from './common.js';
import { drawNeighbourRings, markNeighbours, onNeighbours } from './neighbours.js';
import { PLANE_LABELS, drawBoundary, drawSearch, searchLegend } from './boundary.js';

const className = (names, c) => (c >= 0 && c < names.length ? names[c] : c >= 0 ? String(c) : '—');

/**
 * Tooltip lines of drawn sample `i` (sample index `id`): its own label, prediction and distance
 * to the plane (not the decision at its projected pixel, which an off-plane sample need not share).
 */
export function sampleRows(model, i, id) {
  if (model.get('mode') === 'regression') return regressionRows(model, i, id);
  const names = model.get('class_names');
  const labels = decodeArray(model.get('point_labels'), 'int32').data;
  const preds = decodeArray(model.get('point_predictions'), 'int32').data;
  const rows = [line(`#${id}`, 'gw-tip-index')];
  if (i < labels.length && labels[i] >= 0) rows.push(line(`label: ${className(names, labels[i])}`, 'gw-tip-label'));
  if (i < preds.length && preds[i] >= 0) rows.push(line(`prediction: ${className(names, preds[i])}`, 'gw-tip-prediction'));
  const d = distanceRow(model, i);
  if (d) rows.push(d);
  return rows;
}

/** Distance line of drawn sample `i` (says when it is off the plane, drawn at its projection). */
function distanceRow(model, i) {
  const dist = decodeArray(model.get('point_distance'), 'float32').data;
  if (i >= dist.length) return null;
  const scale = model.get('distance_scale');
  const off = scale > 0 && dist[i] > scale ? ' (off the plane: drawn at its projection)' : '';
  return line(`distance to the plane: ${fmt(dist[i])}${off}`, 'gw-tip-distance');
}

/** Tooltip lines of drawn sample `i` of a regression slice: its target, its own prediction, its distance. */
export function regressionRows(model, i, id) {
  const targets = decodeArray(model.get('point_targets'), 'float32').data;
  const preds = decodeArray(model.get('point_values'), 'float32').data;
  const rows = [line(`#${id}`, 'gw-tip-index')];
  if (i < targets.length && Number.isFinite(targets[i])) rows.push(line(`target: ${fmt(targets[i])}`, 'gw-tip-target'));
  if (i < preds.length && Number.isFinite(preds[i])) rows.push(line(`prediction: ${fmt(preds[i])}`, 'gw-tip-prediction'));
  const d = distanceRow(model, i);
  if (d) rows.push(d);
  return rows;
}

/** Dot colour of a regression sample: its target on the slice's scale (grey without one). */
function targetColour(v, lo, hi) {
  return Number.isFinite(v) ? scaleColour('continuous', (v - lo) / (hi - lo || 1)) : '#999999';
}

function render({ model, el }) {
  const { body, cleanup: rootCleanup } = makeRoot(el, 'slice', model);
  const title = line('', 'gw-title');
  const frame = document.createElement('div');
  frame.className = 'gw-frame';
  const size = model.get('size');
  const canvas = document.createElement('canvas');
  canvas.className = 'gw-canvas';
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(size * dpr);
  canvas.height = Math.round(size * dpr);
  canvas.style.width = `${size}px`;
  canvas.style.height = `${size}px`;
  frame.style.width = `${size}px`;
  frame.style.height = `${size}px`;
  frame.appendChild(canvas);
  const legendBox = document.createElement('div');
  legendBox.className = 'gw-legend';
  // The plane's choice (live slices only) and the boundary search's result (boundary.js).
  const planeBox = document.createElement('label');
  planeBox.className = 'gw-slice-plane';
  const planeSelect = document.createElement('select');
  planeSelect.className = 'gw-plane-select';
  planeBox.append('plane: ', planeSelect);
  planeSelect.addEventListener('change', () => {
    model.set('plane', planeSelect.value);
    model.save_changes();
  });
  const searchBox = line('', 'gw-legend-note gw-boundary-search');
  body.append(title, planeBox, frame, legendBox, searchBox);
  const tooltip = makeTooltip(frame);
  const ctx = canvas.getContext('2d');
  const image = document.createElement('canvas');
  let hoverPoint = -1;

  const regression = () => model.get('mode') === 'regression';

  /** Grid size G of the slice on hand (its classes or values are [G, G]); 0 before the first slice. */
  function gridSize() {
    const { shape } = regression() ? decodeArray(model.get('values'), 'float32') : decodeArray(model.get('classes'), 'uint8');
    return shape.length === 2 ? shape[0] : 0;
  }

  function buildImage() {
    const g = gridSize();
    if (regression()) {
      const values = decodeArray(model.get('values'), 'float32').data;
      const range = model.get('value_range');
      if (g === 0 || values.length !== g * g || range.length !== 2) return false;
      image.width = g;
      image.height = g;
      image.getContext('2d').putImageData(new ImageData(valueRGBA(values, g, range[0], range[1]), g, g), 0, 0);
      return true;
    }
    const classes = decodeArray(model.get('classes'), 'uint8').data;
    const confidence = decodeArray(model.get('confidence'), 'uint8').data;
    if (g === 0 || classes.length !== g * g || confidence.length !== g * g) return false;
    image.width = g;
    image.height = g;
    const ictx = image.getContext('2d');
    const data = new ImageData(sliceRGBA(classes, confidence, g, model.get('n_classes')), g, g);
    ictx.putImageData(data, 0, 0);
    return true;
  }

  function paint() {
    const g = gridSize();
    const extent = model.get('extent');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, size, size);
    if (image.width === g && extent.length === 4) {
      // Bilinear: a coarse grid (low T sharpens the confidence) must not look like pixel blocks.
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(image, 0, 0, size, size);
      // Contour lines of the decision boundary; the count drawn (or 'off') tells tests what is on screen.
      const lines = model.get('show_boundary') && !regression();
      const classes = lines ? decodeArray(model.get('classes'), 'uint8').data : null;
      el.dataset.gwBoundarySegments = lines ? String(drawBoundary(ctx, classes, g, size, extent)) : 'off';
    }
    if (extent.length !== 4) return;
    const pts = decodeArray(model.get('points'), 'float32').data; // [M, 2] plane coordinates
    const labels = decodeArray(model.get('point_labels'), 'int32').data;
    const preds = decodeArray(model.get('point_predictions'), 'int32').data;
    const alpha = decodeArray(model.get('point_alpha'), 'uint8').data;
    const ids = decodeArray(model.get('point_index'), 'int32').data;
    const selected = new Set(model.get('selection'));
    const hovered = model.get('hovered');
    const m = Math.floor(pts.length / 2);
    const reg = regression();
    const targets = reg ? decodeArray(model.get('point_targets'), 'float32').data : null;
    const [lo, hi] = reg && model.get('value_range').length === 2 ? model.get('value_range') : [0, 1];
    for (let i = 0; i < m; i++) {
      const [px, py] = planeToPixel(pts[2 * i], pts[2 * i + 1], size, size, extent, g);
      if (px < -4 || py < -4 || px > size + 4 || py > size + 4) continue;
      const a = alpha.length === m ? alpha[i] / 255 : 1;
      const isSel = selected.has(ids[i]);
      ctx.globalAlpha = isSel ? 1 : a;
      ctx.beginPath();
      ctx.arc(px, py, isSel ? 4 : 2.5, 0, 2 * Math.PI);
      if (reg) {
        ctx.fillStyle = targetColour(targets[i], lo, hi);
      } else {
        const cls = labels[i] >= 0 ? labels[i] : preds[i] ?? -1;
        ctx.fillStyle = cls >= 0 ? categoryColour(cls) : '#999999';
      }
      ctx.fill();
      ctx.lineWidth = isSel || ids[i] === hovered ? 2 : 0.7;
      ctx.strokeStyle = isSel || ids[i] === hovered ? '#000000' : '#333333';
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    const toPixel = (x, y) => planeToPixel(x, y, size, size, extent, g);
    markNeighbours(el, model.get('neighbour_of'), drawNeighbourRings(ctx, model, pts, ids, toPixel, size));
    const anchors = decodeArray(model.get('anchor_xy'), 'float32').data; // [3, 2]
    const names = ['A', 'B', 'C'];
    for (let j = 0; j < anchors.length / 2; j++) {
      const [px, py] = planeToPixel(anchors[2 * j], anchors[2 * j + 1], size, size, extent, g);
      ctx.beginPath();
      ctx.arc(px, py, 7, 0, 2 * Math.PI);
      ctx.fillStyle = '#ffffff';
      ctx.fill();
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = '#111111';
      ctx.stroke();
      ctx.fillStyle = '#111111';
      ctx.font = 'bold 10px sans-serif';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(names[j] ?? String(j), px, py);
    }
    const path = decodeArray(model.get('boundary_path'), 'float32');
    const arcs = decodeArray(model.get('boundary_arcs'), 'float32');
    el.dataset.gwBoundarySearch = drawSearch(ctx, path.data, arcs.data, arcs.shape, size, extent, g) ? String(model.get('boundary_from')) : '';
  }

  /** The plane dropdown (hidden for a static slice) and the boundary search's legend line. */
  function controls() {
    const kinds = model.get('plane_kinds');
    planeBox.style.display = kinds.length ? '' : 'none';
    if (planeSelect.options.length !== kinds.length) {
      planeSelect.replaceChildren(...kinds.map((k) => new Option(PLANE_LABELS[k] ?? k, k)));
    }
    planeSelect.value = model.get('plane');
    searchBox.textContent = searchLegend(model.get('boundary_from'), model.get('boundary_distance'), model.get('boundary_summary'));
  }

  /** Regression legend: what is drawn, the colour bar with its value range, the temperature note. */
  function valueLegend() {
    const range = model.get('value_range');
    const items = [line('background: predicted value on the plane; dots: samples by target (same scale)', 'gw-legend-title')];
    if (range.length === 2) {
      const bar = document.createElement('span');
      bar.className = 'gw-colourbar';
      bar.style.background = `linear-gradient(to right, ${scaleColours('continuous', 9).join(', ')})`;
      const scale = document.createElement('span');
      scale.className = 'gw-legend-item gw-value-scale';
      scale.append(line(fmt(range[0]), 'gw-legend-tick'), bar, line(fmt(range[1]), 'gw-legend-tick'));
      items.push(scale);
    }
    return items;
  }

  function legend() {
    const names = model.get('class_names');
    const items = regression() ? [] : categoryLegendItems(names);
    const scale = model.get('distance_scale');
    const near = document.createElement('span');
    near.className = 'gw-legend-item gw-legend-distance';
    const dots = [1, 0.55, 0.15].map((a) => {
      const d = document.createElement('span');
      d.className = 'gw-dot';
      d.style.opacity = String(a);
      return d;
    });
    if (scale > 0) {
      near.append(
        dots[0],
        ' on the plane ',
        dots[1],
        dots[2],
        ` faded with distance from it (faint beyond ${fmt(3 * scale)}, 3× the median)`,
      );
    } else if (decodeArray(model.get('point_index'), 'int32').data.length > 0) {
      near.append(dots[0], ' every sample lies on the plane');
    } // no samples drawn yet: nothing to say about their distances
    const note = model.get('temperature_note');
    legendBox.replaceChildren(
      ...(regression()
        ? valueLegend()
        : [line('background: model decision on the plane (lightness = confidence); dots: samples by label (else prediction)', 'gw-legend-title')]),
      ...items,
      near,
      ...(note ? [line(note, 'gw-legend-note gw-temperature-note')] : []),
    );
  }

  let pendingImage = true;
  let scheduled = false;
  let arrived = null;
  const redraw = () => {
    scheduled = false;
    const since = arrived;
    arrived = null;
    title.textContent = model.get('title');
    if (pendingImage) pendingImage = !buildImage();
    legend();
    controls();
    paint();
    markDrawn(el, model.get('revision'), since);
  };
  // Every drawn trait redraws on its own change (coalesced: one redraw per batched update), so
  // nothing shown waits for the next revision.
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(redraw);
  };
  const onImage = () => {
    pendingImage = true;
    schedule();
  };
  const onRevision = () => {
    arrived = performance.now();
    schedule();
  };
  const onLinked = () => paint();
  const DRAWN = ['title', 'extent', 'points', 'point_labels', 'point_alpha', 'point_index', 'anchor_xy',
    'class_names', 'n_classes', 'distance_scale', 'point_targets', 'point_values', 'temperature_note',
    'show_boundary', 'boundary_path', 'boundary_arcs', 'boundary_from', 'boundary_distance', 'boundary_summary',
    'plane', 'plane_kinds'];
  const IMAGE = ['classes', 'confidence', 'values', 'value_range', 'mode'];
  for (const name of IMAGE) model.on(`change:${name}`, onImage);
  model.on('change:revision', onRevision);
  for (const name of DRAWN) model.on(`change:${name}`, schedule);
  model.on('change:selection', onLinked);
  model.on('change:hovered', onLinked);
  const neighboursCleanup = onNeighbours(model, onLinked);

  const locate = (e) => {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  canvas.addEventListener('click', (e) => {
    const extent = model.get('extent');
    if (extent.length !== 4) return;
    const [px, py] = locate(e);
    const [a, b] = pixelToPlane(px, py, size, size, extent, gridSize());
    if (e.altKey || e.shiftKey) {
      // alt: a boundary search from the nearest sample; shift: pick it for a MixUp pair.
      const seq = (model.get('modified_click').seq ?? 0) + 1;
      model.set('modified_click', { alpha: a, beta: b, modifier: e.altKey ? 'alt' : 'shift', seq });
    } else {
      model.set('clicked', [a, b]);
    }
    model.save_changes();
  });
  canvas.addEventListener('mousemove', (e) => {
    const extent = model.get('extent');
    if (extent.length !== 4) return;
    const [px, py] = locate(e);
    const g = gridSize();
    const pts = decodeArray(model.get('points'), 'float32').data;
    const ids = decodeArray(model.get('point_index'), 'int32').data;
    let best = -1;
    let bestD = 36;
    for (let i = 0; i < pts.length / 2; i++) {
      const [qx, qy] = planeToPixel(pts[2 * i], pts[2 * i + 1], size, size, extent, g);
      const d = (qx - px) ** 2 + (qy - py) ** 2;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    const [a, b] = pixelToPlane(px, py, size, size, extent, g);
    const col = Math.min(g - 1, Math.max(0, Math.round(((a - extent[0]) / (extent[1] - extent[0])) * (g - 1))));
    const row = Math.min(g - 1, Math.max(0, Math.round(((b - extent[2]) / (extent[3] - extent[2])) * (g - 1))));
    const classes = decodeArray(model.get('classes'), 'uint8').data;
    const conf = decodeArray(model.get('confidence'), 'uint8').data;
    const values = regression() ? decodeArray(model.get('values'), 'float32').data : null;
    const names = model.get('class_names');
    const k = row * g + col;
    const rows = best >= 0 ? sampleRows(model, best, ids[best]) : [];
    if (values && k < values.length) {
      rows.push(line(`${best >= 0 ? 'plane here' : 'model here'}: predicted ${fmt(values[k])}`, 'gw-tip-plane'));
    } else if (k < classes.length) {
      const where = best >= 0 ? 'plane here' : 'model here';
      rows.push(line(`${where}: ${className(names, classes[k])} (confidence ${fmt(conf[k] / 255)})`, 'gw-tip-plane'));
    }
    rows.push(line(`position: ${fmt(a)} along A→B, ${fmt(b)} across towards C`, 'gw-tip-position'));
    tooltip.show(px, py, rows);
    const h = best >= 0 ? ids[best] : -1;
    if (h !== hoverPoint) {
      hoverPoint = h;
      model.set('hovered', h);
      model.save_changes();
    }
  });
  canvas.addEventListener('mouseleave', () => {
    tooltip.hide();
    if (hoverPoint !== -1) {
      hoverPoint = -1;
      model.set('hovered', -1);
      model.save_changes();
    }
  });

  redraw();
  return () => {
    rootCleanup();
    for (const name of IMAGE) model.off(`change:${name}`, onImage);
    model.off('change:revision', onRevision);
    for (const name of DRAWN) model.off(`change:${name}`, schedule);
    model.off('change:selection', onLinked);
    model.off('change:hovered', onLinked);
    neighboursCleanup();
  };
}

export default { render };
