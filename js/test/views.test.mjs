import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aurocFooter, rowHeight, rowsOfPixel } from '../deviation.js';
import { pointSizeFor } from '../points.js';
import { nestedViewsDrawn } from '../status.js';

test('rowsOfPixel partitions n rows over h pixels without gaps or overlaps', () => {
  for (const [h, n] of [[10, 10], [10, 37], [7, 1000], [300, 301]]) {
    let next = 0;
    for (let p = 0; p < h; p++) {
      const [a, b] = rowsOfPixel(p, h, n);
      assert.equal(a, next);
      assert.ok(b > a);
      next = b;
    }
    assert.equal(next, n);
  }
});

test('nestedViewsDrawn compares each nested root drawn revision with its revision', () => {
  const mk = (rev, drawn) => ({ dataset: { gwRevision: rev, gwDrawn: drawn } });
  const root = { querySelectorAll: () => [mk('3', '3'), mk('1', '1')] };
  assert.equal(nestedViewsDrawn(root), true);
  const pending = { querySelectorAll: () => [mk('3', '3'), mk('2', '1')] };
  assert.equal(nestedViewsDrawn(pending), false);
});

test('rowHeight caps one sample at MAX_ROW_HEIGHT and shares the height among many', () => {
  assert.equal(rowHeight(400, 1), 14);
  assert.equal(rowHeight(400, 3), 14);
  assert.equal(rowHeight(400, 100), 4);
  assert.equal(rowHeight(400, 5000), 1);
  assert.equal(rowHeight(400, 0), 0);
});

test('aurocFooter names every layer and separates the entries', () => {
  const text = aurocFooter(['fc1', 'fc2', 'fc3'], [0.8213, NaN, 0.83]);
  assert.equal(text, 'AUROC of mistakes vs reference: fc1 0.82 · fc2 — · fc3 0.83');
  assert.equal(aurocFooter([], []), '');
});

test('pointSizeFor draws few points larger than many, within 0.5x..2.5x of the base', () => {
  const sizes = [50, 1000, 10000, 100000].map((n) => pointSizeFor(4, n));
  assert.ok(sizes[0] > sizes[1] && sizes[1] > sizes[2] && sizes[2] > sizes[3], String(sizes));
  assert.equal(sizes[1], 4);
  assert.ok(Math.abs(sizes[0] - 4 * (1000 / 50) ** 0.25) < 1e-12);
  assert.equal(pointSizeFor(4, 1e9), 2);
  assert.equal(pointSizeFor(4, 1), 10);
});
