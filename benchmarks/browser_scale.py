"""The embedding in a real browser at 10^4..10^6 points: load, pan, zoom, hover, memory.

For each N, a static :class:`geowidgets.EmbeddingView` of N points (a mixture of 10 Gaussian
clusters in 2-D, coloured by cluster label) is written with ``view.save_html`` (the
self-contained offline page: the synced state and the same bundled front end as in the notebook)
and opened from a ``file://`` URL in headless Chromium through Playwright. Per page load it
measures

* **first frame**: ``performance.now()`` (from navigation start) when the view has drawn its
  points (``data-gw-drawn`` is set one animation frame after regl-scatterplot's draw resolved);
* **pan**: a mouse drag of 40 steps; the animation-frame intervals (``requestAnimationFrame``
  timestamps in the page) while it runs, median and p95, and the frames regl-scatterplot drew;
* **zoom**: 20 wheel steps in, 20 out, over the canvas centre; the same frame statistics;
* **hover**: the mouse moved onto a point (from outside the canvas) until the tooltip is visible
  and the next frame has been painted (from the mousemove event's time stamp), median over 10
  points;
* **JS heap** after a forced GC (CDP ``Runtime.getHeapUsage``: V8 heap used, and the typed
  arrays' backing stores, which live outside it) and the renderer's resident memory;

and the size of the HTML file. Each measurement is repeated (fresh page per repeat) and the table
gives medians over the repeats. Headless Chromium has no GPU here: WebGL runs in software
(SwiftShader), so frame times are an upper bound on what a GPU machine would see.

Results go to benchmarks/RESULTS_browser.md.

Usage: ``python benchmarks/browser_scale.py [--sizes 10000 100000 1000000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from geowidgets.widgets import EmbeddingView

RESULTS = Path(__file__).with_name("RESULTS_browser.md")
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
SWIFTSHADER_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]

# In-page recorders: animation-frame time stamps, regl-scatterplot draws, the last mousemove and the
# moment the tooltip became visible (and the frame after it).
INIT_SCRIPT = """
window.__gw = { recording: false, raf: [], draws: [], frameStart: 0, move: null, tipShown: null, tipPainted: null,
  drawnAt: null };
(function loop(t) {
  window.__gw.frameStart = performance.now();
  if (window.__gw.recording) window.__gw.raf.push(t);
  requestAnimationFrame(loop);
})(0);
// Called by regl-scatterplot's synchronous 'drawing' event, at the end of each redraw.
window.__gwDrawing = () => {
  const now = performance.now();
  if (window.__gw.recording) window.__gw.draws.push([now, now - window.__gw.frameStart]);
};
window.addEventListener('mousemove', (e) => { window.__gw.move = e.timeStamp; }, { capture: true });
new MutationObserver((records) => {
  for (const r of records) {
    const t = r.target;
    if (r.attributeName === 'data-gw-drawn' && window.__gw.drawnAt === null) window.__gw.drawnAt = performance.now();
    if (r.attributeName === 'hidden' && t.classList && t.classList.contains('gw-tooltip') && !t.hidden
        && window.__gw.tipShown === null) {
      window.__gw.tipShown = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => { window.__gw.tipPainted = performance.now(); }));
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-gw-drawn', 'hidden'] });
"""


def clusters(n: int, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of a mixture of ``k`` Gaussian clusters in 2-D and their cluster labels."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, 2))
    spread = rng.uniform(0.5, 1.5, size=k)
    labels = rng.integers(0, k, size=n).astype(np.int32)
    xy = centres[labels] + rng.normal(size=(n, 2)) * spread[labels, None]
    return xy.astype(np.float32), labels


def write_page(n: int, folder: Path) -> tuple[Path, np.ndarray, int]:
    """The standalone HTML page of an EmbeddingView of ``n`` clustered points; its positions and canvas size."""
    xy, labels = clusters(n)
    view = EmbeddingView(xy, labels=labels, class_names=[f"cluster {c}" for c in range(10)])
    path = view.save_html(folder / f"embedding-{n}.html", title=f"{n} points")
    positions = np.array(view.positions)
    size = int(view.size)
    view.close()
    return path, positions, size


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


def renderer_rss() -> float:
    """Resident memory (MiB) of the Chromium renderer processes started under this process."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    total = 0
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "--type=renderer" in p.cmdline():
                total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def frame_stats(page, action) -> dict[str, float]:
    """Run ``action()`` (input through Playwright) while the page records its frames.

    ``median``/``p95``: intervals between the scatter's successive redraws (the frame time the user
    sees while the picture follows the input); ``cost``: median main-thread time of one redraw
    (from the animation frame's start to regl-scatterplot's synchronous ``drawing`` event);
    ``raf``: median animation-frame interval; ``draws``: redraws during the gesture.
    """
    page.evaluate("() => { window.__gw.raf = []; window.__gw.draws = []; window.__gw.recording = true; }")
    t0 = time.perf_counter()
    action()
    # Let the last redraw land: wait until no redraw came for 300 ms (and at least two frames).
    page.evaluate(
        """() => new Promise((resolve) => {
          const check = () => {
            const d = window.__gw.draws;
            const last = d.length ? d[d.length - 1][0] : 0;
            if (performance.now() - last > 300) resolve(); else setTimeout(check, 50);
          };
          requestAnimationFrame(() => requestAnimationFrame(check));
        })"""
    )
    wall = time.perf_counter() - t0
    raf, draws = page.evaluate("() => { window.__gw.recording = false; return [window.__gw.raf, window.__gw.draws]; }")
    at = np.asarray([d[0] for d in draws], dtype=np.float64)
    interval = np.diff(at).tolist()
    return {
        "median": statistics.median(interval) if interval else float("nan"),
        "p95": percentile(interval, 95),
        "cost": statistics.median(d[1] for d in draws) if draws else float("nan"),
        "raf": statistics.median(np.diff(raf).tolist()) if len(raf) > 1 else float("nan"),
        "draws": len(draws),
        "wall": wall,
    }


def one_load(browser, url: str, positions: np.ndarray, size: int) -> dict:
    """Open the page once and measure first frame, hover, pan, zoom and memory."""
    context = browser.new_context(viewport={"width": size + 200, "height": size + 300}, device_scale_factor=1)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    out: dict = {}
    try:
        page.goto(url, wait_until="load", timeout=600_000)
        page.wait_for_function("() => window.__gw.drawnAt !== null", timeout=600_000, polling=50)
        out["first_frame_ms"] = page.evaluate("() => window.__gw.drawnAt")
        root = page.locator("#gw-view-view")
        out["renderer"] = root.get_attribute("data-gw-renderer")
        page.evaluate(
            "() => { const sp = document.getElementById('gw-view-view').gwScatterplot;"
            " sp.subscribe('drawing', () => window.__gwDrawing()); }"
        )
        # Hover needs the spatial index (built after the first draw; in a worker past 10^6 points).
        page.wait_for_function(
            "() => !!document.getElementById('gw-view-view').gwScatterplot.get('spatialIndex')",
            timeout=600_000,
            polling=50,
        )
        box = page.locator("#gw-view-view canvas.gw-canvas").bounding_box()
        x0, y0 = box["x"], box["y"]
        outside = (x0 + size + 60, y0 + size / 2)
        rng = np.random.default_rng(1)
        hover = []
        for i in rng.choice(len(positions), size=10, replace=False):
            px = x0 + (positions[i, 0] + 1) / 2 * size
            py = y0 + (1 - positions[i, 1]) / 2 * size
            page.mouse.move(*outside)
            page.wait_for_function("() => document.querySelector('.gw-tooltip').hidden", timeout=60_000)
            page.evaluate(
                "() => { window.__gw.tipShown = null; window.__gw.tipPainted = null; window.__gw.move = null; }"
            )
            page.mouse.move(float(px), float(py))
            page.wait_for_function("() => window.__gw.tipPainted !== null", timeout=60_000, polling=10)
            hover.append(page.evaluate("() => window.__gw.tipPainted - window.__gw.move"))
        out["hover_ms"] = statistics.median(hover)
        page.mouse.move(*outside)

        cx, cy = x0 + size / 2, y0 + size / 2

        def pan() -> None:
            page.mouse.move(cx, cy)
            page.mouse.down()
            for s in range(1, 41):
                page.mouse.move(cx + 3 * s, cy + 2 * s)
            page.mouse.up()

        def zoom() -> None:
            page.mouse.move(cx, cy)
            for _ in range(20):
                page.mouse.wheel(0, -60)
            for _ in range(20):
                page.mouse.wheel(0, 60)

        out["pan"] = frame_stats(page, pan)
        out["zoom"] = frame_stats(page, zoom)
        cdp = context.new_cdp_session(page)
        cdp.send("HeapProfiler.collectGarbage")
        usage = cdp.send("Runtime.getHeapUsage")
        out["heap_mib"] = usage["usedSize"] / 2**20
        out["backing_mib"] = usage.get("backingStorageSize", float("nan")) / 2**20
        cdp.detach()
        out["rss_mib"] = renderer_rss()
        out["errors"] = errors
        return out
    finally:
        context.close()


def launch(pw, executable: str, extra: list[str]):
    return pw.chromium.launch(executable_path=executable, headless=True, args=[*BASE_ARGS, *extra])


def webgl_info(browser) -> dict:
    page = browser.new_page()
    try:
        return page.evaluate(
            """() => {
              const gl = document.createElement('canvas').getContext('webgl');
              if (!gl) return { webgl: false };
              const ext = gl.getExtension('WEBGL_debug_renderer_info');
              const name = ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER;
              return { webgl: true, renderer: gl.getParameter(name) };
            }"""
        )
    finally:
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chromium", default=os.environ.get("GW_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS_browser.md alone")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="gw-browser-"))
    rows = []
    with sync_playwright() as pw:
        extra: list[str] = []
        browser = launch(pw, args.chromium, extra)
        gl = webgl_info(browser)
        if not gl["webgl"]:
            browser.close()
            extra = SWIFTSHADER_ARGS
            browser = launch(pw, args.chromium, extra)
            gl = webgl_info(browser)
        print(f"Chromium {browser.version}, flags {' '.join(BASE_ARGS + extra)}; WebGL: {gl}", flush=True)
        for n in args.sizes:
            t0 = time.perf_counter()
            path, positions, size = write_page(n, folder)
            write_s = time.perf_counter() - t0
            mib = path.stat().st_size / 2**20
            print(f"N={n}: wrote {mib:.1f} MiB in {write_s:.1f} s", flush=True)
            runs = []
            for r in range(args.repeats):
                res = one_load(browser, path.as_uri(), positions, size)
                runs.append(res)
                pan, zoom = res["pan"], res["zoom"]
                print(
                    f"  run {r}: {res['renderer']}, first frame {res['first_frame_ms']:.0f} ms, "
                    f"hover {res['hover_ms']:.1f} ms, pan {pan['median']:.1f}/{pan['p95']:.1f} ms "
                    f"({pan['draws']} redraws, cost {pan['cost']:.1f} ms), "
                    f"zoom {zoom['median']:.1f}/{zoom['p95']:.1f} ms "
                    f"({zoom['draws']} redraws, cost {zoom['cost']:.1f} ms), heap {res['heap_mib']:.0f} MiB + "
                    f"{res['backing_mib']:.0f} MiB buffers, renderer RSS {res['rss_mib']:.0f} MiB, "
                    f"errors {res['errors']}",
                    flush=True,
                )

            def med(get) -> float:
                return statistics.median(get(r) for r in runs)

            rows.append(
                {
                    "n": n,
                    "html_mib": mib,
                    "write_s": write_s,
                    "renderer": runs[0]["renderer"],
                    "first": med(lambda r: r["first_frame_ms"]),
                    "pan_med": med(lambda r: r["pan"]["median"]),
                    "pan_p95": med(lambda r: r["pan"]["p95"]),
                    "pan_cost": med(lambda r: r["pan"]["cost"]),
                    "zoom_med": med(lambda r: r["zoom"]["median"]),
                    "zoom_p95": med(lambda r: r["zoom"]["p95"]),
                    "zoom_cost": med(lambda r: r["zoom"]["cost"]),
                    "hover": med(lambda r: r["hover_ms"]),
                    "heap": med(lambda r: r["heap_mib"]),
                    "backing": med(lambda r: r["backing_mib"]),
                    "rss": med(lambda r: r["rss_mib"]),
                }
            )
        version = browser.version
        browser.close()
    shutil.rmtree(folder, ignore_errors=True)
    table = render_table(rows)
    print(table)
    if not args.no_write:
        write_results(table, version, extra, gl, args.repeats)


def render_table(rows: list[dict]) -> str:
    head = (
        "| N | HTML file (MiB) | first frame (ms) | pan: redraw interval median / p95 (ms) | pan: one redraw (ms) "
        "| zoom: redraw interval median / p95 (ms) | zoom: one redraw (ms) | hover -> tooltip painted (ms) "
        "| JS heap (MiB) | typed arrays (MiB) | renderer RSS (MiB) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['html_mib']:.1f} | {r['first']:.0f} | {r['pan_med']:.0f} / {r['pan_p95']:.0f} "
            f"| {r['pan_cost']:.0f} | {r['zoom_med']:.0f} / {r['zoom_p95']:.0f} | {r['zoom_cost']:.0f} "
            f"| {r['hover']:.0f} | {r['heap']:.0f} | {r['backing']:.0f} | {r['rss']:.0f} |"
        )
    return "\n".join(lines)


def write_results(table: str, version: str, extra: list[str], gl: dict, repeats: int) -> None:
    cpu = platform.processor() or platform.machine()
    text = f"""## The embedding in headless Chromium (standalone HTML page)

`python benchmarks/browser_scale.py` on {cpu}, {os.cpu_count()} cores shared with other work, no GPU;
Chromium {version} headless through Playwright, flags `{" ".join(BASE_ARGS + extra)}`. WebGL renderer
`{gl.get("renderer", "none")}`: **software WebGL** (SwiftShader on the CPU), so every redraw rasterises
every point on the CPU; a GPU draws the same frames far faster. Medians over {repeats} page loads
(a fresh page each); canvas 440 x 440 CSS px (the default `size`), device pixel ratio 1.

The page is `EmbeddingView(xy, labels=...).save_html(...)` of N points (10 Gaussian clusters in 2-D,
coloured by cluster), opened from a `file://` URL.

* *first frame*: from navigation start to the view's first drawn frame (`data-gw-drawn`).
* *redraw interval*: time between successive redraws of the scatter during a 40-step mouse drag
  (pan) and 20 wheel steps in then 20 out (zoom), input through Playwright; the frame time the
  user sees. *one redraw*: main-thread time of one redraw (animation frame start to
  regl-scatterplot's `drawing` event; mostly waiting for the software rasteriser when the frame is
  copied to the view's canvas).
* *hover*: mouse moved onto a point (from outside the canvas) to the frame after the tooltip became
  visible, from the mousemove event's time stamp; median of 10 points.
* *JS heap*: V8 heap used after a forced GC; *typed arrays*: their backing stores (outside the
  heap); *renderer RSS*: resident memory of the browser's renderer processes.

{table}

Rerun: `python benchmarks/browser_scale.py [--sizes 10000 100000 1000000] [--repeats 5]`
(`--chromium PATH` or `$GW_CHROMIUM` for another Chromium; `--no-write` prints the table only).
"""
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
