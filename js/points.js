// Point sizing shared by the scatter views (pure functions, tested in node).

/**
 * Drawn point diameter for `n` points: `base` (the point_size trait, meant for ~1000 points)
 * scaled by (1000 / n)^(1/4) and kept within [0.5, 2.5] x base, so 50 points are drawn larger
 * than 10^5 points.
 */
export function pointSizeFor(base, n) {
  if (!(n > 0)) return base;
  return base * Math.min(2.5, Math.max(0.5, (1000 / n) ** 0.25));
}
