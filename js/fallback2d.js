// Canvas-2D drawing of the embedding for browsers without WebGL (disabled, blocked or no GPU).
// It implements the part of regl-scatterplot's API that embedding.js uses (draw, set, get, select,
// hover, subscribe...), so the view keeps its colours, legend, hover tooltip, click selection and
// linked highlighting. It is slower (every frame repaints every point) and has no lasso, zoom or
// animation; the view says so in a one-line message.

/** True when this browser can create a WebGL context (regl-scatterplot needs one). */
let webgl = null;
export function webglAvailable() {
  if (webgl !== null) return webgl;
  if (typeof document === 'undefined') return false;
  try {
    const c = document.createElement('canvas');
    const gl = c.getContext('webgl') || c.getContext('experimental-webgl');
    webgl = !!gl;
    // Give the probe's context back at once (browsers cap the number of live WebGL contexts).
    if (gl) gl.getExtension('WEBGL_lose_context')?.loseContext();
  } catch {
    webgl = false;
  }
  return webgl;
}

/** The message shown above a fallback drawing. */
export const FALLBACK_MESSAGE =
  'WebGL is not available in this browser: drawn with a slower 2-D canvas (no lasso, zoom or animation).';

/**
 * Palette index of a point: a categorical value is the index itself, a continuous value in [0, 1]
 * picks among the `n` colours (as regl-scatterplot does).
 */
export function colourIndex(value, dataType, n) {
  if (!(n > 0)) return 0;
  if (dataType === 'categorical') return Math.min(n - 1, Math.max(0, Math.round(value)));
  const v = Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
  return Math.min(n - 1, Math.round(v * (n - 1)));
}

/** Index of the point nearest pixel (px, py) within `radius` pixels, or -1; `xs`, `ys` are pixel positions. */
export function nearestPoint(xs, ys, px, py, radius) {
  let best = -1;
  let bestD = radius * radius;
  for (let i = 0; i < xs.length; i++) {
    const d = (xs[i] - px) ** 2 + (ys[i] - py) ** 2;
    if (d <= bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

function toCss(colour) {
  if (typeof colour === 'string') return colour;
  if (Array.isArray(colour)) {
    const [r, g, b, a = 1] = colour;
    return `rgba(${Math.round(r * 255)}, ${Math.round(g * 255)}, ${Math.round(b * 255)}, ${a})`;
  }
  return '#4e79a7';
}

/**
 * A 2-D canvas scatter with regl-scatterplot's interface (the subset embedding.js uses).
 *
 * @param {{canvas: HTMLCanvasElement, width: number, height: number, pointSize?: number}} options
 */
export function createFallbackScatterplot({ canvas, width, height, pointSize = 4 }) {
  const dpr = (typeof window !== 'undefined' && window.devicePixelRatio) || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.dataset.gwFallback = '2d';
  const ctx = canvas.getContext('2d');
  const state = { pointColor: ['#4e79a7'], pointSize, colorBy: 'valueA' };
  const listeners = new Map();
  let points = { x: new Float32Array(0), y: new Float32Array(0), valueA: new Float32Array(0) };
  let dataType = 'categorical';
  let selected = new Set();
  let hovered = -1;
  let px = new Float32Array(0);
  let py = new Float32Array(0);
  // Identity camera: the view shows exactly [-1, 1]^2 (the layout is normalised to it).
  const cameraView = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);

  const emit = (event, payload) => {
    for (const cb of listeners.get(event) ?? []) cb(payload);
  };

  function paint() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);
    const n = px.length;
    const colours = state.pointColor.map(toCss);
    const r = Math.max(1, state.pointSize / 2);
    const dim = selected.size > 0;
    for (let i = 0; i < n; i++) {
      ctx.globalAlpha = dim && !selected.has(i) ? 0.35 : 1;
      ctx.fillStyle = colours[colourIndex(points.valueA[i], dataType, colours.length)];
      ctx.beginPath();
      ctx.arc(px[i], py[i], r, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    for (const i of [...selected, hovered]) {
      if (i < 0 || i >= n) continue;
      ctx.beginPath();
      ctx.arc(px[i], py[i], r + 1.5, 0, 2 * Math.PI);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = '#000000';
      ctx.stroke();
    }
  }

  function locate(e) {
    const rect = canvas.getBoundingClientRect();
    return nearestPoint(px, py, e.clientX - rect.left, e.clientY - rect.top, Math.max(5, state.pointSize));
  }
  const onMove = (e) => {
    const i = locate(e);
    if (i === hovered) return;
    if (hovered >= 0) emit('pointout', hovered);
    hovered = i;
    paint();
    if (i >= 0) emit('pointover', i);
  };
  const onLeave = () => {
    if (hovered >= 0) emit('pointout', hovered);
    hovered = -1;
    paint();
  };
  const onClick = (e) => {
    const i = locate(e);
    if (i >= 0) {
      selected = new Set([i]);
      emit('select', { points: [i] });
    } else if (selected.size) {
      selected = new Set();
      emit('deselect');
    }
    paint();
  };
  canvas.addEventListener('mousemove', onMove);
  canvas.addEventListener('mouseleave', onLeave);
  canvas.addEventListener('click', onClick);

  return {
    fallback: true,
    set(options) {
      Object.assign(state, options);
      paint();
    },
    get(name) {
      if (name === 'cameraView') return cameraView;
      if (name === 'spatialIndex') return undefined;
      return state[name];
    },
    draw(data, options = {}) {
      points = { x: data.x, y: data.y, valueA: data.valueA ?? new Float32Array(data.x.length) };
      dataType = options.zDataType ?? 'categorical';
      const n = points.x.length;
      px = new Float32Array(n);
      py = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        px[i] = ((points.x[i] + 1) / 2) * width;
        py[i] = ((1 - points.y[i]) / 2) * height;
      }
      selected = new Set([...selected].filter((i) => i < n));
      paint();
      emit('view', {});
      return Promise.resolve();
    },
    clear() {
      px = new Float32Array(0);
      py = new Float32Array(0);
      paint();
      return Promise.resolve();
    },
    select(indices) {
      selected = new Set(indices);
      paint();
    },
    deselect() {
      selected = new Set();
      paint();
    },
    hover(i) {
      hovered = i ?? -1;
      paint();
    },
    subscribe(event, cb) {
      if (!listeners.has(event)) listeners.set(event, []);
      listeners.get(event).push(cb);
    },
    destroy() {
      canvas.removeEventListener('mousemove', onMove);
      canvas.removeEventListener('mouseleave', onLeave);
      canvas.removeEventListener('click', onClick);
      listeners.clear();
    },
  };
}
