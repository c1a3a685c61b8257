// Colour mapping shared by the views: categorical palette, continuous and diverging scales,
// and the decision-slice image (class colour, confidence as lightness).

/** Tableau-10 followed by its light variants: 20 distinguishable categorical colours. */
export const PALETTE = [
  '#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac',
  '#a0cbe8', '#ffbe7d', '#ff9d9a', '#86bcb6', '#8cd17d', '#f1ce63', '#d4a6c8', '#fabfd2', '#d7b5a6', '#79706e',
];

// Viridis control points (matplotlib), evenly spaced in [0, 1].
const VIRIDIS = [
  [68, 1, 84], [72, 35, 116], [64, 67, 135], [52, 94, 141], [41, 120, 142],
  [32, 144, 140], [34, 167, 132], [68, 190, 112], [121, 209, 81], [189, 222, 38], [253, 231, 37],
];
// Diverging blue - white - red (ColorBrewer RdBu reversed), evenly spaced in [0, 1].
const DIVERGING = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];

export function hexToRgb(hex) {
  const h = hex.replace('#', '');
  if (!/^[0-9a-fA-F]{6}$/.test(h)) throw new Error(`not a #rrggbb colour: ${hex}`);
  return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)];
}

export function rgbToHex([r, g, b]) {
  const c = (v) => Math.round(Math.min(255, Math.max(0, v))).toString(16).padStart(2, '0');
  return `#${c(r)}${c(g)}${c(b)}`;
}

/** Colour of category `i` (cycles through the palette). */
/** Colour of a category code outside the known categories (never a real class's colour). */
export const UNKNOWN_COLOUR = '#9e9e9e';

export function categoryColour(i) {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/** Linear interpolation in a list of evenly spaced RGB control points; t in [0, 1]. */
export function interpolate(stops, t) {
  const u = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(Math.floor(u), stops.length - 2);
  const f = u - i;
  return stops[i].map((v, c) => v + f * (stops[i + 1][c] - v));
}

/** `n` hex colours sampling a scale: kind "continuous" (viridis) or "diverging" (blue-white-red). */
export function scaleColours(kind, n = 256) {
  const stops = kind === 'diverging' ? DIVERGING : VIRIDIS;
  return Array.from({ length: n }, (_, i) => rgbToHex(interpolate(stops, n === 1 ? 0 : i / (n - 1))));
}

/**
 * Normalise values onto [0, 1] for a scale. Continuous: (v - vmin) / (vmax - vmin); diverging:
 * centred at 0 with the larger of |vmin|, |vmax| at the ends. Out-of-range values sit at the ends
 * (display only; tooltips show the raw value). NaN maps to 0.
 */
export function normalise(values, kind, vmin, vmax, out = new Float32Array(values.length)) {
  let lo = vmin;
  let hi = vmax;
  if (kind === 'diverging') {
    const m = Math.max(Math.abs(vmin), Math.abs(vmax)) || 1;
    lo = -m;
    hi = m;
  }
  const span = hi - lo || 1;
  for (let i = 0; i < values.length; i++) {
    const t = (values[i] - lo) / span;
    out[i] = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  }
  return out;
}

/**
 * Encode values for regl-scatterplot's colorBy: categorical codes stay integers, numeric values
 * become [0, 1]. Returns {valueA, pointColor, dataType}.
 */
export function encodeColours(values, kind, vmin, vmax, nCategories) {
  if (kind === 'categorical') {
    // A code outside 0..n-1 (or NaN) is never painted as a real class: it gets the grey
    // UNKNOWN_COLOUR, one slot past the categories.
    const valueA = new Float32Array(values.length);
    const n = Math.max(1, nCategories | 0);
    let unknown = 0;
    for (let i = 0; i < values.length; i++) {
      const c = Math.round(values[i]);
      const ok = c >= 0 && c < n;
      valueA[i] = ok ? c : n;
      if (!ok) unknown++;
    }
    const pointColor = Array.from({ length: n }, (_, i) => categoryColour(i));
    if (unknown > 0) pointColor.push(UNKNOWN_COLOUR);
    return { valueA, pointColor, dataType: 'categorical', unknown };
  }
  return { valueA: normalise(values, kind, vmin, vmax), pointColor: scaleColours(kind, 256), dataType: 'continuous' };
}

/**
 * RGBA pixels of a decision slice. `classes` and `confidence` are G x G row-major with row 0 at
 * beta_min (origin lower-left); the image puts beta_max on top. Lightness: confidence 1/C -> white,
 * 1 -> the class colour. `confidence` is uint8 (0..255 meaning 0..1).
 */
export function sliceRGBA(classes, confidence, resolution, nClasses) {
  const g = resolution;
  const out = new Uint8ClampedArray(g * g * 4);
  const floor = nClasses > 1 ? 1 / nClasses : 0;
  const rgb = Array.from({ length: Math.max(nClasses, 1) }, (_, i) => hexToRgb(categoryColour(i)));
  for (let row = 0; row < g; row++) {
    const src = (g - 1 - row) * g;
    for (let col = 0; col < g; col++) {
      const k = src + col;
      const c = rgb[classes[k]] || [128, 128, 128];
      const p = confidence[k] / 255;
      const w = Math.min(1, Math.max(0, (p - floor) / (1 - floor || 1)));
      const o = (row * g + col) * 4;
      out[o] = 255 + w * (c[0] - 255);
      out[o + 1] = 255 + w * (c[1] - 255);
      out[o + 2] = 255 + w * (c[2] - 255);
      out[o + 3] = 255;
    }
  }
  return out;
}

/** Hex colour of `t` in [0, 1] on a scale: kind "continuous" (viridis) or "diverging" (blue-white-red). */
export function scaleColour(kind, t) {
  return rgbToHex(interpolate(kind === 'diverging' ? DIVERGING : VIRIDIS, t));
}

/**
 * RGBA pixels of a regression slice: `values` (G x G row-major, row 0 at beta_min) on the viridis
 * scale from `vmin` to `vmax` (clipped at the ends; NaN grey); the image puts beta_max on top.
 */
export function valueRGBA(values, resolution, vmin, vmax) {
  const g = resolution;
  const out = new Uint8ClampedArray(g * g * 4);
  const span = vmax - vmin || 1;
  for (let row = 0; row < g; row++) {
    const src = (g - 1 - row) * g;
    for (let col = 0; col < g; col++) {
      const v = values[src + col];
      const c = Number.isFinite(v) ? interpolate(VIRIDIS, (v - vmin) / span) : [158, 158, 158];
      const o = (row * g + col) * 4;
      out[o] = c[0];
      out[o + 1] = c[1];
      out[o + 2] = c[2];
      out[o + 3] = 255;
    }
  }
  return out;
}

/** CSS colour of a deviation z-score on the diverging scale clipped at +-zmax. */
export function zColour(z, zmax = 5) {
  if (!Number.isFinite(z)) return '#cccccc';
  return rgbToHex(interpolate(DIVERGING, (Math.max(-zmax, Math.min(zmax, z)) + zmax) / (2 * zmax)));
}
