// StatusBar: the status line of a Box-based view (Explorer, LayerProfile). It marks the
// enclosing Box (class `root_class`) as the view root: data-gw-view, and data-gw-drawn once
// the revision is painted (for the Explorer: once every nested view has drawn its revision).
//
// Also the one status-line painter every view shares (paintStatus, used by common.js's makeRoot):
// the text, and while busy a thin determinate bar (role="progressbar") when `progress` is in
// [0, 1], else the CSS spinner.

import { answerSnapshots } from './snapshot.js';

/**
 * What a status line shows for a view's (status, message, progress): `text`, and `fraction` in
 * [0, 1] for a determinate bar (only while busy with a known amount of work) or null (spinner).
 */
export function statusLine(status, message, progress) {
  const text = status === 'busy' ? message || 'working…' : status === 'error' ? `error: ${message}` : message || '';
  const known = status === 'busy' && typeof progress === 'number' && progress >= 0 && progress <= 1;
  return { text, fraction: known ? progress : null };
}

/** Percent (0..100, one decimal at most) of a fraction, as aria-valuenow and the bar's label give it. */
export function percentOf(fraction) {
  return Math.round(fraction * 1000) / 10;
}

/**
 * Paint a `.gw-status` element: data-status, the text, and (busy with a known amount of work) a
 * determinate bar before it: `.gw-progress` with role="progressbar" and aria-valuenow in percent,
 * whose `.gw-progress-fill` width is the fraction, and a `.gw-progress-label` ("12.8%").
 * Otherwise no bar, and CSS draws the spinner (busy) or the error mark.
 */
export function paintStatus(el, status, message, progress, text = null) {
  const line = statusLine(status, message, progress);
  const shown = text ?? line.text;
  el.dataset.status = status;
  const textEl = document.createElement('span');
  textEl.className = 'gw-status-text';
  textEl.textContent = shown;
  if (line.fraction === null) {
    delete el.dataset.progress;
    el.replaceChildren(textEl);
  } else {
    const pct = percentOf(line.fraction);
    el.dataset.progress = 'determinate';
    const bar = document.createElement('span');
    bar.className = 'gw-progress';
    bar.setAttribute('role', 'progressbar');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    bar.setAttribute('aria-valuenow', String(pct));
    bar.setAttribute('aria-valuetext', `${pct}%`);
    bar.setAttribute('aria-label', shown || 'progress');
    const fill = document.createElement('span');
    fill.className = 'gw-progress-fill';
    fill.style.width = `${pct}%`;
    bar.appendChild(fill);
    const label = document.createElement('span');
    label.className = 'gw-progress-label';
    label.textContent = `${pct}%`;
    el.replaceChildren(bar, label, textEl);
  }
  el.hidden = !shown && line.fraction === null;
}

function findRoot(el, cls) {
  return el.closest(`.${cls}`);
}

/** True when every nested view root inside `root` has drawn the revision it was given. */
export function nestedViewsDrawn(root) {
  const views = root.querySelectorAll('[data-gw-view]');
  for (const v of views) {
    if (v === root) continue;
    if (v.dataset.gwRevision !== undefined && v.dataset.gwDrawn !== v.dataset.gwRevision) return false;
  }
  return true;
}

function render({ model, el }) {
  el.classList.add('gw-statusbar');
  const summary = document.createElement('span');
  summary.className = 'gw-summary';
  const status = document.createElement('span');
  status.className = 'gw-status';
  el.replaceChildren(summary, status);
  let root = null;
  let frame = 0;
  let tries = 0;

  const show = () => {
    const s = model.get('status');
    const noBokeh = model.get('needs_bokeh') && typeof window !== 'undefined' && !window.Bokeh;
    const text = noBokeh ? 'BokehJS is not loaded in this page: re-run the cell that created the widget.' : null;
    paintStatus(status, s, model.get('message'), model.get('progress'), text);
    summary.textContent = model.get('summary');
    if (root) {
      root.dataset.gwStatus = s;
      root.dataset.gwRevision = String(model.get('revision'));
    }
  };

  const markWhenDrawn = () => {
    cancelAnimationFrame(frame);
    const revision = model.get('revision');
    const step = () => {
      if (!root) {
        root = findRoot(el, model.get('root_class'));
        if (!root) {
          if (tries++ < 600) frame = requestAnimationFrame(step);
          return;
        }
        root.dataset.gwView = model.get('view');
        show();
      }
      if (model.get('revision') !== revision) return;
      if (model.get('status') === 'busy' || !nestedViewsDrawn(root)) {
        frame = requestAnimationFrame(step);
        return;
      }
      // One more frame so the nested draws are painted.
      frame = requestAnimationFrame(() => {
        if (model.get('revision') === revision) root.dataset.gwDrawn = String(revision);
      });
    };
    frame = requestAnimationFrame(step);
  };

  const onChange = () => {
    show();
    markWhenDrawn();
  };
  model.on('change:status', onChange);
  model.on('change:message', show);
  model.on('change:progress', show);
  model.on('change:summary', show);
  model.on('change:revision', onChange);
  show();
  markWhenDrawn();
  // save_png() of a Box-based view (the profile): the whole Box, bokeh canvases included.
  const stopSnapshots = answerSnapshots(model, () => root ?? findRoot(el, model.get('root_class')));
  return () => {
    stopSnapshots();
    cancelAnimationFrame(frame);
    model.off('change:status', onChange);
    model.off('change:message', show);
    model.off('change:progress', show);
    model.off('change:summary', show);
    model.off('change:revision', onChange);
  };
}

export default { render };
