import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hexToRgb, scaleColour, scaleColours, valueRGBA } from '../colour.js';

test('valueRGBA: flips rows (beta up), maps vmin -> first viridis colour, vmax -> last, clips outside', () => {
  // values row 0 (beta_min) = [0, 1], row 1 (beta_max) = [2, 5]; scale 0..2.
  const px = valueRGBA(new Float32Array([0, 1, 2, 5]), 2, 0, 2);
  const at = (row, col) => Array.from(px.slice((row * 2 + col) * 4, (row * 2 + col) * 4 + 3));
  // The ramp's ends and middle are viridis control points (integers), so no rounding differs.
  const [first, mid, last] = scaleColours('continuous', 3).map(hexToRgb);
  assert.deepEqual(at(1, 0), first); // image bottom-left = beta_min, alpha_min = 0
  assert.deepEqual(at(1, 1), mid); // 1 is the middle of 0..2
  assert.deepEqual(at(0, 0), last); // 2 = vmax
  assert.deepEqual(at(0, 1), last); // 5 is clipped to vmax
  assert.equal(px[3], 255);
});

test('valueRGBA: NaN is grey, a zero span does not divide by zero', () => {
  const px = valueRGBA(new Float32Array([Number.NaN]), 1, 3, 3);
  assert.deepEqual(Array.from(px.slice(0, 3)), [158, 158, 158]);
});

test('scaleColour agrees with the sampled ramp', () => {
  const ramp = scaleColours('continuous', 5);
  for (let i = 0; i < 5; i++) assert.equal(scaleColour('continuous', i / 4), ramp[i]);
  assert.equal(scaleColour('continuous', -1), ramp[0]);
  assert.equal(scaleColour('continuous', 2), ramp[4]);
});
