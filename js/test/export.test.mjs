import assert from 'node:assert/strict';
import { test } from 'node:test';
import { colourIndex, nearestPoint } from '../fallback2d.js';
import { gradientStops } from '../snapshot.js';

test('colourIndex: categorical values are palette indices, continuous values in [0, 1] spread over it', () => {
  assert.equal(colourIndex(2, 'categorical', 10), 2);
  assert.equal(colourIndex(12, 'categorical', 10), 9);
  assert.equal(colourIndex(0, 'continuous', 256), 0);
  assert.equal(colourIndex(1, 'continuous', 256), 255);
  assert.equal(colourIndex(0.5, 'continuous', 256), Math.round(0.5 * 255));
  assert.equal(colourIndex(NaN, 'continuous', 256), 0);
});

test('nearestPoint finds the closest point within the radius, else -1', () => {
  const xs = new Float32Array([0, 10, 20]);
  const ys = new Float32Array([0, 0, 0]);
  assert.equal(nearestPoint(xs, ys, 9, 1, 5), 1);
  assert.equal(nearestPoint(xs, ys, 15.5, 0, 5), 2);
  assert.equal(nearestPoint(xs, ys, 50, 50, 5), -1);
});

test('gradientStops reads the colours of a CSS linear-gradient', () => {
  assert.deepEqual(gradientStops('linear-gradient(to right, rgb(1, 2, 3), rgb(4, 5, 6) 50%, #fff)'), [
    'rgb(1, 2, 3)',
    'rgb(4, 5, 6)',
    '#fff',
  ]);
  assert.deepEqual(gradientStops('none'), []);
});
