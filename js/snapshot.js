// View snapshots (view.save_png): the view's root element composed into one PNG as the user sees
// it: every canvas inside it (the plot, overlays, bokeh charts) at its place, and the legend,
// title and footer drawn from the DOM (text with its computed font and colour, swatches and
// colour bars from their computed backgrounds). The kernel asks with a custom message
// {type: "snapshot"}; the view answers {type: "snapshot", png: <base64>, width, height}.

/** Colours of a CSS `linear-gradient(...)` (evenly spaced), e.g. the colour bars. */
export function gradientStops(css) {
  const m = /linear-gradient\((.*)\)\s*$/.exec(css || '');
  if (!m) return [];
  const parts = [];
  let depth = 0;
  let cur = '';
  for (const ch of m[1]) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur.trim());
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts.filter((p) => !/^(to |\d+deg)/.test(p)).map((p) => p.replace(/\s+\d+(\.\d+)?%$/, ''));
}

const visible = (style) => style.display !== 'none' && style.visibility !== 'hidden' && Number(style.opacity) !== 0;
const transparent = (c) => !c || c === 'transparent' || /rgba\(.*,\s*0\)$/.test(c);

/** Draw `root` and everything in it into a new canvas (device pixels); tooltips are left out. */
export function composeElement(root) {
  const dpr = window.devicePixelRatio || 1;
  const box = root.getBoundingClientRect();
  const width = Math.max(1, Math.ceil(box.width));
  const height = Math.max(1, Math.ceil(box.height));
  const out = document.createElement('canvas');
  out.width = Math.round(width * dpr);
  out.height = Math.round(height * dpr);
  const ctx = out.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  const at = (r) => [r.left - box.left, r.top - box.top, r.width, r.height];

  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent.replace(/\s+/g, ' ');
      if (!text.trim()) return;
      const parent = node.parentElement;
      const style = getComputedStyle(parent);
      const range = document.createRange();
      range.selectNodeContents(node);
      ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      ctx.fillStyle = style.color;
      ctx.textBaseline = 'middle';
      ctx.textAlign = 'left';
      // One rect per wrapped line: draw the words that fall on each line.
      const rects = [...range.getClientRects()];
      if (rects.length <= 1) {
        const [x, y, , h] = at(rects[0] ?? range.getBoundingClientRect());
        ctx.fillText(text.trim(), x, y + h / 2);
        return;
      }
      let line = '';
      let lineTop = null;
      let lineRect = null;
      const words = text.trim().split(' ');
      let offset = node.textContent.indexOf(words[0]);
      for (const word of words) {
        offset = node.textContent.indexOf(word, offset);
        const wr = document.createRange();
        wr.setStart(node, offset);
        wr.setEnd(node, offset + word.length);
        offset += word.length;
        const r = wr.getBoundingClientRect();
        if (lineTop === null || Math.abs(r.top - lineTop) < 2) {
          line = line ? `${line} ${word}` : word;
          lineTop = lineTop ?? r.top;
          lineRect = lineRect ?? r;
        } else {
          const [x, y, , h] = at(lineRect);
          ctx.fillText(line, x, y + h / 2);
          line = word;
          lineTop = r.top;
          lineRect = r;
        }
      }
      if (line && lineRect) {
        const [x, y, , h] = at(lineRect);
        ctx.fillText(line, x, y + h / 2);
      }
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    if (node.classList.contains('gw-tooltip') || node.tagName === 'SCRIPT' || node.tagName === 'STYLE') return;
    const style = getComputedStyle(node);
    if (!visible(style)) return;
    const r = node.getBoundingClientRect();
    const [x, y, w, h] = at(r);
    if (w > 0 && h > 0) {
      const radius = parseFloat(style.borderTopLeftRadius) || 0;
      const shape = () => {
        ctx.beginPath();
        if (radius >= Math.min(w, h) / 2) ctx.ellipse(x + w / 2, y + h / 2, w / 2, h / 2, 0, 0, 2 * Math.PI);
        else ctx.rect(x, y, w, h);
      };
      const stops = gradientStops(style.backgroundImage);
      if (stops.length > 1) {
        const g = ctx.createLinearGradient(x, 0, x + w, 0);
        stops.forEach((c, i) => g.addColorStop(i / (stops.length - 1), c));
        ctx.fillStyle = g;
        shape();
        ctx.fill();
      } else if (!transparent(style.backgroundColor)) {
        ctx.fillStyle = style.backgroundColor;
        shape();
        ctx.fill();
      }
      const bw = parseFloat(style.borderTopWidth) || 0;
      if (bw > 0 && style.borderTopStyle !== 'none' && !transparent(style.borderTopColor) && node.tagName !== 'CANVAS') {
        ctx.lineWidth = bw;
        ctx.strokeStyle = style.borderTopColor;
        shape();
        ctx.stroke();
      }
      if (node.tagName === 'CANVAS' && node.width > 0 && node.height > 0) {
        try {
          ctx.globalAlpha = Number(style.opacity) || 1;
          ctx.drawImage(node, x, y, w, h);
        } finally {
          ctx.globalAlpha = 1;
        }
      } else if (node.tagName === 'IMG' && node.complete) {
        ctx.drawImage(node, x, y, w, h);
      } else if (node.tagName === 'SELECT' || node.tagName === 'INPUT') {
        // Form controls: the value they show (their options are not laid out on the page).
        const text = node.tagName === 'SELECT' ? node.selectedOptions[0]?.textContent ?? '' : node.value;
        ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
        ctx.fillStyle = style.color;
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'left';
        ctx.fillText(text, x + 4, y + h / 2, Math.max(1, w - 8));
        return;
      }
    }
    if (node.shadowRoot) for (const child of node.shadowRoot.childNodes) walk(child);
    for (const child of node.childNodes) walk(child);
  };
  walk(root);
  return out;
}

/** The view root composed into a PNG: {png (base64, no data: prefix), width, height} in device pixels. */
export function snapshotPNG(root) {
  const canvas = composeElement(root);
  const url = canvas.toDataURL('image/png');
  return { png: url.slice(url.indexOf(',') + 1), width: canvas.width, height: canvas.height };
}

/**
 * Answer the kernel's {type: "snapshot"} messages on `model` with a PNG of `rootOf()` (a function,
 * so a root found later, like the Box of a status line, is used). Returns the cleanup function.
 * `beforeSnapshot` (optional) runs first, e.g. to repaint a WebGL canvas.
 */
export function answerSnapshots(model, rootOf, beforeSnapshot = null) {
  const onMsg = async (msg) => {
    if (!msg || msg.type !== 'snapshot') return;
    try {
      if (beforeSnapshot) await beforeSnapshot();
      const root = rootOf();
      if (!root) throw new Error('the view is not on the page');
      model.send({ type: 'snapshot', id: msg.id ?? null, ...snapshotPNG(root) });
    } catch (err) {
      model.send({ type: 'snapshot', id: msg.id ?? null, error: String(err) });
    }
  };
  model.on('msg:custom', onMsg);
  return () => model.off('msg:custom', onMsg);
}
