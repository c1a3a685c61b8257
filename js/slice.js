// SliceView: a decision slice as an image (class colour, confidence as lightness), the data
// projected onto the plane, and the three anchors. A temperature move only sends new
// confidences; a click sets `clicked` = [alpha, beta] and the kernel picks a new anchor.
import { decodeArray, pixelToPlane, planeToPixel } from './codecs.js';
import { categoryColour, sliceRGBA } from './colour.js';
import { categoryLegendItems, fmt, line, makeRoot, makeTooltip, markDrawn } from './common.js';

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
  body.append(title, frame, legendBox);
  const tooltip = makeTooltip(frame);
  const ctx = canvas.getContext('2d');
  const image = document.createElement('canvas');
  let hoverPoint = -1;

  /** Grid size G of the slice on hand (its classes are [G, G]); 0 before the first slice. */
  function gridSize() {
    const { shape } = decodeArray(model.get('classes'), 'uint8');
    return shape.length === 2 ? shape[0] : 0;
  }

  function buildImage() {
    const g = gridSize();
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
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(image, 0, 0, size, size);
    }
    if (extent.length !== 4) return;
    const pts = decodeArray(model.get('points'), 'float32').data; // [M, 2] plane coordinates
    const labels = decodeArray(model.get('point_labels'), 'int32').data;
    const alpha = decodeArray(model.get('point_alpha'), 'uint8').data;
    const ids = decodeArray(model.get('point_index'), 'int32').data;
    const selected = new Set(model.get('selection'));
    const hovered = model.get('hovered');
    const m = Math.floor(pts.length / 2);
    for (let i = 0; i < m; i++) {
      const [px, py] = planeToPixel(pts[2 * i], pts[2 * i + 1], size, size, extent, g);
      if (px < -4 || py < -4 || px > size + 4 || py > size + 4) continue;
      const a = alpha.length === m ? alpha[i] / 255 : 1;
      const isSel = selected.has(ids[i]);
      ctx.globalAlpha = isSel ? 1 : a;
      ctx.beginPath();
      ctx.arc(px, py, isSel ? 4 : 2.5, 0, 2 * Math.PI);
      ctx.fillStyle = categoryColour(labels[i] ?? 0);
      ctx.fill();
      ctx.lineWidth = isSel || ids[i] === hovered ? 2 : 0.7;
      ctx.strokeStyle = isSel || ids[i] === hovered ? '#000000' : '#333333';
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
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
  }

  function legend() {
    const names = model.get('class_names');
    const items = categoryLegendItems(names);
    legendBox.replaceChildren(line('class (lightness = confidence)', 'gw-legend-title'), ...items);
  }

  let pendingImage = true;
  const onImage = () => {
    pendingImage = true;
  };
  let arrived = null;
  const redraw = () => {
    const since = arrived;
    title.textContent = model.get('title');
    if (pendingImage) pendingImage = !buildImage();
    legend();
    paint();
    markDrawn(el, model.get('revision'), since);
  };
  const onRevision = () => {
    arrived = performance.now();
    queueMicrotask(redraw);
  };
  const onLinked = () => paint();
  model.on('change:classes', onImage);
  model.on('change:confidence', onImage);
  model.on('change:revision', onRevision);
  model.on('change:selection', onLinked);
  model.on('change:hovered', onLinked);

  const locate = (e) => {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  canvas.addEventListener('click', (e) => {
    const extent = model.get('extent');
    if (extent.length !== 4) return;
    const [px, py] = locate(e);
    const [a, b] = pixelToPlane(px, py, size, size, extent, gridSize());
    model.set('clicked', [a, b]);
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
    const names = model.get('class_names');
    const k = row * g + col;
    const rows = [];
    if (best >= 0) rows.push(line(`#${ids[best]}`, 'gw-tip-index'));
    if (k < classes.length) {
      rows.push(line(`model: ${names[classes[k]] ?? classes[k]} (${fmt(conf[k] / 255)})`));
    }
    rows.push(line(`α=${fmt(a)} β=${fmt(b)}`));
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
    model.off('change:classes', onImage);
    model.off('change:confidence', onImage);
    model.off('change:revision', onRevision);
    model.off('change:selection', onLinked);
    model.off('change:hovered', onLinked);
  };
}

export default { render };
