// Standalone HTML snapshots (ex.save_html / view.save_html): the views' render functions, driven
// without a kernel by a small model object over the state stored in the file. The file holds
// <script type="application/json" id="gw-export-state"> with
//   {views: {name: {kind, state}}, links: [[trait, [names...]]], layer, layers: [...],
//    by_layer: {layer: {name: {trait: value}}} (optional), profile: {markers, sources} (optional)}
// where every array trait is {dtype, shape, b64} (little-endian bytes, base64). Selection and
// hover links between the views are re-created here; the layer picker swaps in each layer's
// stored state. Nothing is fetched: the bundle, BokehJS and the data are all in the file.
import deviation from './deviation.js';
import embedding from './embedding.js';
import slice from './slice.js';

const RENDER = { embedding, slice, deviation };

/** Bytes of a base64 string as an ArrayBuffer. */
export function base64ToBuffer(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

/** A stored trait value with its arrays ({dtype, shape, b64}) turned into {dtype, shape, buffer}. */
export function decodeStored(value) {
  if (value && typeof value === 'object' && !Array.isArray(value) && 'b64' in value && 'dtype' in value) {
    return { dtype: value.dtype, shape: value.shape, buffer: base64ToBuffer(value.b64) };
  }
  return value;
}

/** Equal trait values: arrays ({dtype, shape, buffer}) only when they are the same object, others by value. */
export function same(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return Object.is(a, b);
  if ('buffer' in a || 'buffer' in b) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The part of an anywidget model the views use (get, set, on, off, save_changes, send), over a
 * plain state object. `set` fires `change:<name>` at once (as Backbone does); `save_changes`
 * fires the `save` listeners, which the links use to pass a user's selection or hover on.
 */
export class StaticModel {
  constructor(state = {}) {
    this.state = { ...state };
    this.listeners = new Map();
  }

  get(name) {
    return this.state[name];
  }

  set(name, value) {
    if (same(this.state[name], value)) return;
    this.state[name] = value;
    this.emit(`change:${name}`, value);
  }

  on(event, cb) {
    for (const e of event.split(' ')) {
      if (!this.listeners.has(e)) this.listeners.set(e, new Set());
      this.listeners.get(e).add(cb);
    }
  }

  off(event, cb) {
    for (const e of event.split(' ')) this.listeners.get(e)?.delete(cb);
  }

  emit(event, payload) {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb(payload);
  }

  save_changes() {
    this.emit('save');
  }

  /** Custom messages go to the kernel; there is none here. */
  send() {}

  /** Set several traits as one batched update: the values first, then `revision` (so views redraw once). */
  update(values) {
    for (const [name, value] of Object.entries(values)) if (name !== 'revision') this.set(name, value);
    this.set('revision', (this.state.revision ?? 0) + 1);
  }
}

/** Keep `trait` equal across `models` (a change in one is set on the others), like traitlets.link. */
export function linkModels(models, trait) {
  let busy = false;
  for (const source of models) {
    const pass = () => {
      if (busy) return;
      busy = true;
      try {
        for (const target of models) if (target !== source) target.set(trait, source.get(trait));
      } finally {
        busy = false;
      }
    };
    source.on(`change:${trait}`, pass);
  }
}

/** The state of view `name` at `layer`: the stored state with that layer's differences applied. */
export function stateAt(spec, base, name, layer) {
  const diff = spec.by_layer?.[layer]?.[name] ?? {};
  const keys = new Set(Object.values(spec.by_layer ?? {}).flatMap((views) => Object.keys(views[name] ?? {})));
  const out = {};
  for (const key of keys) out[key] = key in diff ? diff[key] : base[key];
  return out;
}

function bokehModel(id) {
  const docs = window.Bokeh?.documents ?? [];
  for (const doc of docs) {
    const m = doc.get_model_by_id(id);
    if (m) return m;
  }
  return null;
}

/** Read the stored state, render every view into its element, link them, and wire the layer picker. */
export function boot(root = document) {
  const node = root.getElementById('gw-export-state');
  if (!node) return null;
  const spec = JSON.parse(node.textContent);
  const decode = (state) => Object.fromEntries(Object.entries(state).map(([k, v]) => [k, decodeStored(v)]));
  const base = {};
  const models = {};
  for (const [name, view] of Object.entries(spec.views)) {
    base[name] = decode(view.state);
    models[name] = new StaticModel(base[name]);
  }
  for (const layerViews of Object.values(spec.by_layer ?? {})) {
    for (const [name, diff] of Object.entries(layerViews)) layerViews[name] = decode(diff);
  }
  for (const [trait, names] of spec.links ?? []) linkModels(names.map((n) => models[n]).filter(Boolean), trait);
  for (const [name, view] of Object.entries(spec.views)) {
    const el = root.getElementById(`gw-view-${name}`);
    RENDER[view.kind].render({ model: models[name], el });
  }

  const layerNames = spec.layers ?? [];
  const markProfile = (layer) => {
    const where = layerNames.indexOf(layer);
    for (const id of spec.profile?.markers ?? []) {
      const span = bokehModel(id);
      if (span && where >= 0) span.location = where;
    }
  };
  const picker = root.getElementById('gw-export-layer');
  const setLayer = (layer) => {
    if (!spec.by_layer?.[layer]) return;
    for (const name of Object.keys(models)) models[name].update(stateAt(spec, base[name], name, layer));
    if (picker) picker.value = layer;
    markProfile(layer);
    document.documentElement.dataset.gwLayer = layer;
  };
  if (picker) picker.addEventListener('change', () => setLayer(picker.value));
  document.documentElement.dataset.gwLayer = spec.layer ?? '';
  // Tapping a point of a profile chart picks its layer, as in the notebook (when every layer is stored).
  const wireProfile = (tries = 0) => {
    const sources = (spec.profile?.sources ?? []).map(bokehModel).filter(Boolean);
    if (!sources.length) {
      if (spec.profile && tries < 200) setTimeout(() => wireProfile(tries + 1), 50);
      return;
    }
    for (const src of sources) {
      src.selected.properties.indices.change.connect(() => {
        const i = src.selected.indices[0];
        if (i !== undefined && layerNames[i]) setLayer(layerNames[i]);
      });
    }
    document.documentElement.dataset.gwProfile = 'ready';
  };
  wireProfile();
  window.gwExport = { models, setLayer, spec };
  return window.gwExport;
}

if (typeof document !== 'undefined' && document.getElementById('gw-export-state')) boot(document);
