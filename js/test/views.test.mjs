import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rowsOfPixel } from '../deviation.js';
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
