"""Kernel-side interaction latency of the widgets: trait change -> result traits set.

Measures, without a browser, the time from assigning a trait (what a slider move does) to the
moment the view's result traits have been set (its ``revision`` bumped), for

* a k move (EmbeddingView coloured by kNN deviation; DeviationMap over every layer),
* a temperature move (EmbeddingView coloured by confidence; SliceView 128x128 rescale),
* a layer change (first aligned picture: PCA of the new layer aligned to the one on screen),
* a UMAP refinement of a layer (worker thread, numba compiled beforehand),
* setting 10^6 positions as a binary buffer (normalise + encode + ipywidgets serialisation),

at N = 10k and 100k samples of the "moons" toy set run through a trained MLP (hidden 64).
Caches are warm where the design says they are (kNN/deviation tables built once per layer; the
logits held), and every move asks for a k or T not asked before, so memoised answers are not
measured. Results (medians) go to benchmarks/RESULTS_interaction.md.

Usage: ``python benchmarks/interaction.py [--sizes 10000 100000] [--repeats 15]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from geowidgets.datasets import toy_data, toy_demo
from geowidgets.session import Session
from geowidgets.widgets import DeviationMap, EmbeddingView, SliceView
from geowidgets.widgets._embedding import normalise_positions

RESULTS = Path(__file__).with_name("RESULTS_interaction.md")


def timed_moves(view, trait: str, values: list, wait: bool = False) -> list[float]:
    """Seconds from ``setattr(view, trait, v)`` to the revision bump, for each value."""
    out = []
    for v in values:
        rev = view.revision
        t0 = time.perf_counter()
        setattr(view, trait, v)
        if wait or view.revision == rev:
            view.wait(600)
        if view.revision == rev:
            raise RuntimeError(f"{trait}={v!r} set no result traits ({view.status}: {view.message})")
        out.append(time.perf_counter() - t0)
    return out


def since(t0: float) -> str:
    return f"{1000 * (time.perf_counter() - t0):.0f}"


def ms(xs: list[float]) -> str:
    return f"{1000 * statistics.median(xs):.1f}"


def bench_size(n: int, model: torch.nn.Module, layers: list[str], repeats: int) -> list[tuple[str, int, str, str]]:
    X, y = toy_data("moons", n=n, seed=1)
    rows = []
    t0 = time.perf_counter()
    session = Session(model, X, y, layers=layers, k_max=50)
    session.activations()
    rows.append(("capture all layers (once)", n, since(t0), "-"))
    layer = layers[2]

    t0 = time.perf_counter()
    view = EmbeddingView(session, layer=layer, method="pca", colour_by="deviation", k=10)
    assert view.wait(3600), view.message
    rows.append(("first view: PCA + kNN-deviation tables at k_max=50", n, since(t0), "-"))

    ks = list(range(11, 11 + repeats))
    rows.append(("k move, EmbeddingView (deviation colours)", n, ms(timed_moves(view, "k", ks)), "30"))
    view.colour_by = "confidence"
    temps = list(np.geomspace(0.06, 18, repeats))
    rows.append(("temperature move, EmbeddingView (confidence)", n, ms(timed_moves(view, "temperature", temps)), "30"))

    dmap = DeviationMap(session, k=10)
    t0 = time.perf_counter()
    assert dmap.wait(3600), dmap.message
    rows.append(("DeviationMap first build (tables for every layer)", n, since(t0), "-"))
    dmap_times = timed_moves(dmap, "k", list(range(12, 12 + repeats)))
    rows.append(("k move, DeviationMap (all layers)", n, ms(dmap_times), "-"))

    slice_view = SliceView(session, layer=layer, resolution=128)
    assert slice_view.wait(600), slice_view.message
    temps = list(np.geomspace(0.07, 15, repeats))
    rows.append(("temperature move, SliceView 128x128", n, ms(timed_moves(slice_view, "temperature", temps)), "30"))

    if n <= 20_000:
        view.colour_by = "label"
        order = [layers[0], layers[2], layers[1], layers[3], layers[4]] * max(1, repeats // 5)
        times = timed_moves(view, "layer", order, wait=True)
        rows.append(("layer change: first aligned picture (PCA)", n, ms(times), "1500"))
        from geowidgets import geometry as geo

        geo.warm_up_umap(wait=True)
        umap_times = []
        for target in layers[:2]:
            t0 = time.perf_counter()
            session.layout(target, "umap", reference=session.layout(target, "pca"))
            umap_times.append(time.perf_counter() - t0)
        rows.append(("UMAP refinement of a layer (worker thread)", n, ms(umap_times), "-"))
    return rows


def bench_transfer(repeats: int) -> tuple[str, int, str, str]:
    from ipywidgets.widgets.widget import _remove_buffers

    xy = np.random.default_rng(0).normal(size=(1_000_000, 2)).astype(np.float32)
    view = EmbeddingView()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        view.set_points(xy)
        _remove_buffers(view.get_state(["positions"]))  # what ipywidgets does before sending
        times.append(time.perf_counter() - t0)
    assert view.positions.nbytes == 8_000_000
    normalise_positions(xy[:10])
    return ("set 10^6 positions (normalise + binary buffer)", 1_000_000, ms(times), "40")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    demo = toy_demo("moons", n=4000, epochs=10, seed=0)
    rows = []
    for n in args.sizes:
        print(f"N={n} ...", flush=True)
        rows += bench_size(n, demo.model, demo.layers, args.repeats)
        for r in rows[-8:]:
            print("  ", r, flush=True)
    rows.append(bench_transfer(max(3, args.repeats // 3)))
    lines = [
        "## Interaction latency, kernel side (trait change -> result traits set)",
        "",
        f"`python benchmarks/interaction.py` on {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; medians over {args.repeats} moves, each to a k/T not asked before; "
        "toy 'moons' through a trained MLP (64 hidden), layers fc1..fc3. Shared 2-core machine.",
        "",
        "| interaction | N | median (ms) | target (ms) |",
        "|---|---|---|---|",
        *[f"| {name} | {n} | {value} | {target} |" for name, n, value, target in rows],
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
