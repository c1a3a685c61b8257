import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PALETTE, UNKNOWN_COLOUR, categoryColour, encodeColours, hexToRgb, interpolate, normalise, rgbToHex, scaleColours, sliceRGBA, zColour,
} from '../colour.js';

test('hex <-> rgb round trip and validation', () => {
  assert.deepEqual(hexToRgb('#4e79a7'), [0x4e, 0x79, 0xa7]);
  assert.equal(rgbToHex([0x4e, 0x79, 0xa7]), '#4e79a7');
  assert.equal(rgbToHex([300, -5, 127.6]), '#ff0080');
  assert.throws(() => hexToRgb('red'), /rrggbb/);
});

test('categories cycle through the palette', () => {
  assert.equal(categoryColour(0), PALETTE[0]);
  assert.equal(categoryColour(PALETTE.length + 2), PALETTE[2]);
  assert.equal(categoryColour(-1), PALETTE[PALETTE.length - 1]);
});

test('interpolate hits control points and midpoints exactly', () => {
  const stops = [[0, 0, 0], [100, 200, 50]];
  assert.deepEqual(interpolate(stops, 0), [0, 0, 0]);
  assert.deepEqual(interpolate(stops, 1), [100, 200, 50]);
  assert.deepEqual(interpolate(stops, 0.5), [50, 100, 25]);
  assert.deepEqual(interpolate(stops, 2), [100, 200, 50]);
  assert.deepEqual(interpolate(stops, Number.NaN), [0, 0, 0]);
});

test('normalise: continuous is linear and clipped, NaN -> 0', () => {
  const out = normalise(new Float32Array([0, 5, 10, 20, -3, Number.NaN]), 'continuous', 0, 10);
  assert.deepEqual(Array.from(out), [0, 0.5, 1, 1, 0, 0]);
});

test('normalise: diverging is centred at zero and symmetric', () => {
  const out = normalise(new Float32Array([-5, 0, 2.5, 5, 9]), 'diverging', -5, 5);
  assert.deepEqual(Array.from(out), [0, 0.5, 0.75, 1, 1]);
  const asym = normalise(new Float32Array([0, -2]), 'diverging', -2, 8);
  assert.deepEqual(Array.from(asym), [0.5, 0.375]);
});

test('encodeColours: categorical keeps integer codes, numeric gets a 256 colour ramp', () => {
  const cat = encodeColours(new Float32Array([0, 2, 1, 7]), 'categorical', 0, 2, 3);
  assert.equal(cat.dataType, 'categorical');
  // 7 is not one of the 3 categories: grey, never class 0's colour.
  assert.deepEqual(Array.from(cat.valueA), [0, 2, 1, 3]);
  assert.deepEqual(cat.pointColor, [PALETTE[0], PALETTE[1], PALETTE[2], UNKNOWN_COLOUR]);
  assert.equal(cat.unknown, 1);
  // Labels are values: classes 0, 5, 9 of a 10-class model get three different colours.
  const sparse = encodeColours(new Float32Array([0, 5, 9]), 'categorical', 0, 9, 10);
  assert.deepEqual(Array.from(sparse.valueA), [0, 5, 9]);
  const colours = Array.from(sparse.valueA, (c) => sparse.pointColor[c]);
  assert.equal(new Set(colours).size, 3);
  assert.equal(sparse.unknown, 0);
  const cont = encodeColours(new Float32Array([0, 1]), 'continuous', 0, 1, 0);
  assert.equal(cont.dataType, 'continuous');
  assert.equal(cont.pointColor.length, 256);
  assert.equal(cont.pointColor[0], '#440154');
  assert.equal(cont.pointColor[255], '#fde725');
});

test('diverging scale: white in the middle, blue below, red above', () => {
  const ramp = scaleColours('diverging', 3);
  assert.equal(ramp[1], '#f7f7f7');
  const [r0, , b0] = hexToRgb(ramp[0]);
  const [r2, , b2] = hexToRgb(ramp[2]);
  assert.ok(b0 > r0 && r2 > b2);
  assert.equal(zColour(0), '#f7f7f7');
  assert.equal(zColour(99), zColour(5));
  assert.equal(zColour(Number.NaN), '#cccccc');
});

test('sliceRGBA: flips rows (beta up) and maps confidence 1/C -> white, 1 -> class colour', () => {
  // 2 x 2 grid, row 0 = beta_min. classes [[0, 1], [1, 0]]; confidence in uint8.
  const classes = new Uint8Array([0, 1, 1, 0]);
  const confidence = new Uint8Array([255, 255, 128, 255]);
  const px = sliceRGBA(classes, confidence, 2, 2);
  const at = (row, col) => Array.from(px.slice((row * 2 + col) * 4, (row * 2 + col) * 4 + 4));
  // image row 1 (bottom) = grid row 0
  assert.deepEqual(at(1, 0), [...hexToRgb(PALETTE[0]), 255]);
  assert.deepEqual(at(1, 1), [...hexToRgb(PALETTE[1]), 255]);
  // grid row 1 col 0: class 1 at confidence 128/255 ~ 0.502 -> almost white (floor 0.5)
  const nearWhite = at(0, 0);
  assert.ok(nearWhite.slice(0, 3).every((v) => v >= 250));
  assert.deepEqual(at(0, 1), [...hexToRgb(PALETTE[0]), 255]);
});
