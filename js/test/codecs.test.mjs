import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ndcToPixel, pixelToNdc, pixelToPlane, planeToPixel, splitXY, toTyped } from '../codecs.js';

test('toTyped views a DataView without copying when aligned', () => {
  const src = new Float32Array([1.5, -2, 3.25]);
  const dv = new DataView(src.buffer);
  const out = toTyped(dv, 'float32');
  assert.deepEqual(Array.from(out), [1.5, -2, 3.25]);
  assert.equal(out.buffer, src.buffer);
});

test('toTyped copies an unaligned slice correctly', () => {
  const bytes = new Uint8Array(13);
  new Float32Array(bytes.buffer, 0, 3).set([7, 8, 9]);
  const shifted = new Uint8Array(14);
  shifted.set(bytes.subarray(0, 12), 1);
  const view = new DataView(shifted.buffer, 1, 12);
  assert.deepEqual(Array.from(toTyped(view, 'float32')), [7, 8, 9]);
});

test('toTyped handles null, int32 and rejects bad sizes and dtypes', () => {
  assert.equal(toTyped(null, 'int32').length, 0);
  assert.deepEqual(Array.from(toTyped(new Int32Array([-1, 5]).buffer, 'int32')), [-1, 5]);
  assert.throws(() => toTyped(new Uint8Array(5), 'float32'), /whole number/);
  assert.throws(() => toTyped(new Uint8Array(4), 'float16'), /unknown dtype/);
  assert.throws(() => toTyped([1, 2], 'float32'), /binary buffer/);
});

test('splitXY de-interleaves positions', () => {
  const { x, y } = splitXY(new Float32Array([0, 1, 2, 3, 4, 5]));
  assert.deepEqual(Array.from(x), [0, 2, 4]);
  assert.deepEqual(Array.from(y), [1, 3, 5]);
});

test('NDC <-> pixel: [-1,1]^2 fills the canvas, y up', () => {
  assert.deepEqual(ndcToPixel(-1, 1, 400, 300), [0, 0]);
  assert.deepEqual(ndcToPixel(1, -1, 400, 300), [400, 300]);
  assert.deepEqual(ndcToPixel(0, 0, 400, 300), [200, 150]);
  const [x, y] = pixelToNdc(...ndcToPixel(0.3, -0.7, 500, 500), 500, 500);
  assert.ok(Math.abs(x - 0.3) < 1e-12 && Math.abs(y + 0.7) < 1e-12);
});

test('plane <-> pixel uses pixel centres plus half a cell of padding', () => {
  const extent = [0, 1, 0, 1];
  const g = 3; // centres at 0, 0.5, 1 -> drawn span [-0.25, 1.25]
  assert.deepEqual(planeToPixel(-0.25, 1.25, 300, 300, extent, g), [0, 0]);
  const [cx, cy] = planeToPixel(0, 0, 300, 300, extent, g);
  assert.ok(Math.abs(cx - 50) < 1e-9 && Math.abs(cy - 250) < 1e-9); // centre of the lower-left cell
  const [a, b] = pixelToPlane(cx, cy, 300, 300, extent, g);
  assert.ok(Math.abs(a) < 1e-12 && Math.abs(b) < 1e-12);
});
