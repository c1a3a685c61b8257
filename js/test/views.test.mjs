import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aurocFooter, rowHeight, rowsOfPixel } from '../deviation.js';
import { pointSizeFor } from '../points.js';
import { nestedViewsDrawn, paintStatus, percentOf, statusLine } from '../status.js';

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

test('statusLine draws a determinate bar only while busy with a known amount of work', () => {
  assert.deepEqual(statusLine('busy', 'captured 12,800 / 100,000 samples…', 0.128), {
    text: 'captured 12,800 / 100,000 samples…',
    fraction: 0.128,
  });
  assert.equal(statusLine('busy', '', -1).fraction, null); // unknown: the spinner
  assert.equal(statusLine('busy', '', -1).text, 'working…');
  assert.equal(statusLine('busy', 'x', 1.5).fraction, null);
  assert.equal(statusLine('busy', 'x', undefined).fraction, null); // a model without the trait
  assert.equal(statusLine('idle', '', 0.5).fraction, null);
  assert.deepEqual(statusLine('error', 'ValueError: k', 0.5), { text: 'error: ValueError: k', fraction: null });
  assert.equal(percentOf(0.128), 12.8);
  assert.equal(percentOf(2 / 3), 66.7);
  assert.equal(percentOf(1), 100);
});

// A minimal DOM: enough for paintStatus (createElement, attributes, dataset, children, textContent).
function fakeElement(tag) {
  const el = {
    tagName: tag,
    className: '',
    dataset: {},
    style: {},
    attributes: {},
    children: [],
    hidden: false,
    _text: '',
    setAttribute(name, value) {
      this.attributes[name] = String(value);
    },
    getAttribute(name) {
      return this.attributes[name] ?? null;
    },
    appendChild(child) {
      this.children.push(child);
      return child;
    },
    replaceChildren(...children) {
      this.children = children;
      this._text = '';
    },
    querySelector(selector) {
      const cls = selector.slice(1);
      for (const child of this.children) {
        if (child.className === cls) return child;
        const found = child.querySelector(selector);
        if (found) return found;
      }
      return null;
    },
  };
  Object.defineProperty(el, 'textContent', {
    get() {
      return this._text + this.children.map((c) => c.textContent).join('');
    },
    set(value) {
      this.children = [];
      this._text = String(value);
    },
  });
  return el;
}

test('paintStatus: a progressbar with aria-valuenow while busy and known, the spinner otherwise', () => {
  const saved = globalThis.document;
  globalThis.document = { createElement: fakeElement };
  try {
    const el = fakeElement('div');
    paintStatus(el, 'busy', 'captured 600 / 2,000 samples…', 0.3);
    const bar = el.querySelector('.gw-progress');
    assert.ok(bar);
    assert.equal(bar.getAttribute('role'), 'progressbar');
    assert.equal(bar.getAttribute('aria-valuenow'), '30');
    assert.equal(bar.getAttribute('aria-valuemin'), '0');
    assert.equal(bar.getAttribute('aria-valuemax'), '100');
    assert.equal(el.querySelector('.gw-progress-fill').style.width, '30%');
    assert.equal(el.querySelector('.gw-progress-label').textContent, '30%');
    assert.equal(el.querySelector('.gw-status-text').textContent, 'captured 600 / 2,000 samples…');
    assert.equal(el.dataset.progress, 'determinate');
    assert.equal(el.dataset.status, 'busy');
    assert.equal(el.hidden, false);
    paintStatus(el, 'busy', 'laying out fc2…', -1); // unknown amount: no bar (CSS draws the spinner)
    assert.equal(el.querySelector('.gw-progress'), null);
    assert.equal(el.dataset.progress, undefined);
    assert.equal(el.textContent, 'laying out fc2…');
    paintStatus(el, 'idle', '', 0.3); // idle: no bar, nothing shown
    assert.equal(el.querySelector('.gw-progress'), null);
    assert.equal(el.hidden, true);
    paintStatus(el, 'busy', 'x', 0.5, 'BokehJS is not loaded'); // a text that replaces the message
    assert.equal(el.querySelector('.gw-status-text').textContent, 'BokehJS is not loaded');
  } finally {
    globalThis.document = saved;
  }
});
