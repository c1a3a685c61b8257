// StatusBar: the status line of a Box-based view (Explorer, LayerProfile). It marks the
// enclosing Box (class `root_class`) as the view root: data-gw-view, and data-gw-drawn once
// the revision is painted (for the Explorer: once every nested view has drawn its revision).

import { answerSnapshots } from './snapshot.js';

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
    let text = model.get('message');
    if (model.get('needs_bokeh') && typeof window !== 'undefined' && !window.Bokeh) {
      text = 'BokehJS is not loaded in this page: re-run the cell that created the widget.';
    }
    status.dataset.status = s;
    status.textContent = s === 'busy' ? text || 'working…' : s === 'error' ? `error: ${text}` : text;
    status.hidden = !status.textContent;
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
    model.off('change:summary', show);
    model.off('change:revision', onChange);
  };
}

export default { render };
