// Boundary geometry drawn over a decision slice: the decision boundary as contour lines (the
// edges between neighbouring grid cells whose predicted class differs), and a CGBA boundary
// search (the ray from the sample to its first boundary point, the semicircle arcs, the points
// it moved through) projected on the slice's plane. Used by slice.js.
import { planeToPixel } from './codecs.js';
import { fmt } from './common.js';

/** How the slice's plane is chosen: [value of the `plane` trait, label in the dropdown]. */
export const PLANE_LABELS = {
  anchors: 'through anchors A, B, C',
  pca: 'top two PCA axes, through A',
  gradient: 'margin gradient at A (+ top PCA axis)',
  centroids: 'class centroids (of A, B, C), through A',
  random: 'two random directions, through A',
};

/**
 * Boundary edges of a class grid: where two neighbouring cells hold different classes.
 *
 * `classes` is G x G row-major (row = beta index, row 0 at beta_min; column = alpha index).
 * Returns a Float32Array of segments [a0, b0, a1, b1, ...] in grid-index units: a cell edge
 * between columns c and c+1 of row r runs from (c + 0.5, r - 0.5) to (c + 0.5, r + 0.5); one
 * between rows r and r+1 of column c from (c - 0.5, r + 0.5) to (c + 0.5, r + 0.5).
 */
export function boundarySegments(classes, g) {
  const out = [];
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < g; c++) {
      const v = classes[r * g + c];
      if (c + 1 < g && classes[r * g + c + 1] !== v) out.push(c + 0.5, r - 0.5, c + 0.5, r + 0.5);
      if (r + 1 < g && classes[(r + 1) * g + c] !== v) out.push(c - 0.5, r + 0.5, c + 0.5, r + 0.5);
    }
  }
  return Float32Array.from(out);
}

/** Grid-index coordinates (column, row) -> plane coordinates (alpha, beta) of a slice's extent. */
export function gridToPlane(col, row, extent, g) {
  const da = g > 1 ? (extent[1] - extent[0]) / (g - 1) : 0;
  const db = g > 1 ? (extent[3] - extent[2]) / (g - 1) : 0;
  return [extent[0] + col * da, extent[2] + row * db];
}

/**
 * Draw the boundary edges of `classes` (G x G) as dark lines over the image. Returns the number of
 * segments drawn. Collinear neighbouring edges are joined by the path, so the line reads as a contour.
 */
export function drawBoundary(ctx, classes, g, size, extent) {
  if (g < 2 || classes.length !== g * g) return 0;
  const seg = boundarySegments(classes, g);
  const n = seg.length / 4;
  if (n === 0) return 0;
  ctx.save();
  ctx.beginPath();
  for (let i = 0; i < n; i++) {
    const [a0, b0] = gridToPlane(seg[4 * i], seg[4 * i + 1], extent, g);
    const [a1, b1] = gridToPlane(seg[4 * i + 2], seg[4 * i + 3], extent, g);
    const [x0, y0] = planeToPixel(a0, b0, size, size, extent, g);
    const [x1, y1] = planeToPixel(a1, b1, size, size, extent, g);
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
  }
  ctx.lineWidth = 1.6;
  ctx.strokeStyle = 'rgba(20, 20, 20, 0.85)';
  ctx.lineCap = 'round';
  ctx.stroke();
  ctx.restore();
  return n;
}

/**
 * Draw a CGBA search projected on the plane: `path` [P, 2] (the sample, then each boundary point
 * found), `arcs` [A, S, 2] (the semicircle arcs evaluated). The ray from the sample to the first
 * boundary point is a solid line, the arcs dashed, the final boundary point a cross, and the
 * sample-to-boundary segment (the distance found) a thick line. Returns true if anything was drawn.
 */
export function drawSearch(ctx, path, arcs, arcShape, size, extent, g) {
  const p = Math.floor(path.length / 2);
  if (p < 1) return false;
  const px = (i, arr = path) => planeToPixel(arr[2 * i], arr[2 * i + 1], size, size, extent, g);
  ctx.save();
  if (arcShape.length === 3 && arcs.length === arcShape[0] * arcShape[1] * 2) {
    const [na, ns] = arcShape;
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1.2;
    ctx.strokeStyle = '#6a1b9a';
    for (let a = 0; a < na; a++) {
      ctx.beginPath();
      for (let s = 0; s < ns; s++) {
        const [x, y] = px(a * ns + s, arcs);
        if (s === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }
  const [x0, y0] = px(0);
  if (p >= 2) {
    const [x1, y1] = px(1);
    ctx.beginPath(); // the ray: the line search along the margin gradient
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = '#6a1b9a';
    ctx.stroke();
    const [xe, ye] = px(p - 1);
    ctx.beginPath(); // the distance found
    ctx.moveTo(x0, y0);
    ctx.lineTo(xe, ye);
    ctx.lineWidth = 3;
    ctx.strokeStyle = '#e65100';
    ctx.stroke();
    for (let i = 1; i < p; i++) {
      const [x, y] = px(i);
      ctx.beginPath();
      ctx.arc(x, y, 2.2, 0, 2 * Math.PI);
      ctx.fillStyle = '#6a1b9a';
      ctx.fill();
    }
    ctx.beginPath(); // the boundary point: a cross
    ctx.moveTo(xe - 5, ye - 5);
    ctx.lineTo(xe + 5, ye + 5);
    ctx.moveTo(xe - 5, ye + 5);
    ctx.lineTo(xe + 5, ye - 5);
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = '#e65100';
    ctx.stroke();
  }
  ctx.beginPath(); // the sample the search starts from
  ctx.arc(x0, y0, 5, 0, 2 * Math.PI);
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = '#e65100';
  ctx.stroke();
  ctx.restore();
  return true;
}

/** Legend text of a boundary search: where it starts and the distance found (or why none). */
export function searchLegend(from, distance, summary) {
  if (from < 0) return '';
  if (summary) return summary;
  return Number.isFinite(distance) ? `boundary search from #${from}: distance ${fmt(distance)}` : `boundary search from #${from}…`;
}
