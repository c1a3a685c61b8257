import assert from 'node:assert/strict';
import { test } from 'node:test';
import { boundarySegments, gridToPlane } from '../boundary.js';

/** Every pair of 4-neighbouring cells with different classes, as a set of 'r,c|r2,c2' keys. */
function differingPairs(classes, g) {
  const pairs = new Set();
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < g; c++) {
      for (const [r2, c2] of [[r, c + 1], [r + 1, c]]) {
        if (r2 < g && c2 < g && classes[r * g + c] !== classes[r2 * g + c2]) pairs.add(`${r},${c}|${r2},${c2}`);
      }
    }
  }
  return pairs;
}

test('boundarySegments gives one edge per pair of neighbouring cells of different classes, between them', () => {
  const g = 9;
  // Three classes: a disc of class 2 inside a half-plane split between 0 and 1.
  const classes = new Uint8Array(g * g);
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < g; c++) {
      classes[r * g + c] = (r - 4) ** 2 + (c - 4) ** 2 <= 5 ? 2 : c < r ? 1 : 0;
    }
  }
  const seg = boundarySegments(classes, g);
  const pairs = differingPairs(classes, g);
  assert.equal(seg.length / 4, pairs.size);
  for (let i = 0; i < seg.length / 4; i++) {
    const [a0, b0, a1, b1] = seg.slice(4 * i, 4 * i + 4);
    assert.equal(Math.hypot(a1 - a0, b1 - b0), 1); // one cell edge long
    // The edge's midpoint lies halfway between the two cells it separates.
    const mc = (a0 + a1) / 2;
    const mr = (b0 + b1) / 2;
    const key = Number.isInteger(mc) ? `${mr - 0.5},${mc}|${mr + 0.5},${mc}` : `${mr},${mc - 0.5}|${mr},${mc + 0.5}`;
    assert.ok(pairs.has(key), key);
  }
});

test('boundarySegments of a one-class grid is empty; gridToPlane maps grid ends to the extent', () => {
  assert.equal(boundarySegments(new Uint8Array(16).fill(3), 4).length, 0);
  assert.deepEqual(gridToPlane(0, 0, [-1, 3, 2, 6], 5), [-1, 2]);
  assert.deepEqual(gridToPlane(4, 4, [-1, 3, 2, 6], 5), [3, 6]);
  assert.deepEqual(gridToPlane(0.5, 1.5, [0, 4, 0, 8], 5), [0.5, 3]);
});
