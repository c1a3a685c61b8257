"""UMAP: our path (exact kNN graph + umap-learn layout from a PCA start) vs plain umap-learn.

For N in {5k, 20k}, D=128 (ten curved 3-d clusters plus noise), side by side in one process:

* **plain**: ``umap.UMAP().fit_transform(X)`` — umap-learn's defaults (NN-descent, spectral
  start, 500/200 epochs, unseeded so its SGD uses every core);
* **ours (cold)**: ``geo.knn_graph(X, 30)`` then ``geo.embed(X, knn=graph)`` — seeded (single-threaded
  SGD), reproducible;
* **ours (graph cached)**: ``geo.embed`` when the layer's kNN graph already exists (the widget's case:
  the graph is shared with every k-dependent probe);
* **live pass**: ``geo.embed(X, knn=graph, init=previous, n_epochs=30)``.

Quality: trustworthiness (k=10) of each layout on the same random 2000-point subsample.
The numba compile cost of each path is measured first, on its own, in this fresh process.

Usage: python benchmarks/embed.py [--sizes 5000 20000] [--repeats 1]
Writes benchmarks/RESULTS_embed.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import time

import numpy as np


def make_data(n: int, d: int = 128, seed: int = 0) -> np.ndarray:
    """Ten curved 3-d clusters in R^d plus isotropic noise (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)) * 4
    label = rng.integers(0, 10, n)
    t = rng.uniform(0, 3, size=(n, 3))
    A = rng.normal(size=(10, 3, d))
    X = centres[label] + np.einsum("nk,nkd->nd", np.sin(t), A[label]) + 0.3 * rng.normal(size=(n, d))
    return X.astype(np.float32)


def trust(X: np.ndarray, Y: np.ndarray, m: int = 2000) -> float:
    from sklearn.manifold import trustworthiness

    idx = np.random.default_rng(1).choice(len(X), min(m, len(X)), replace=False)
    return float(trustworthiness(X[idx], Y[idx], n_neighbors=10))


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import torch
    import umap

    from geowidgets import geometry as geo

    # compile costs, each measured once in this process
    t0 = time.perf_counter()
    geo.warm_up_umap(wait=True)
    t_compile_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    umap.UMAP().fit_transform(make_data(4200, 16, seed=5))  # >= 4096 points: NN-descent path compiles too
    t_compile_plain = time.perf_counter() - t0
    print(f"compile: ours {t_compile_ours:.1f}s (background thread), plain {t_compile_plain:.1f}s", flush=True)

    rows = []
    for n in args.sizes:
        X = make_data(n)

        def plain():
            return umap.UMAP().fit_transform(X)

        def ours_cold():
            g = geo.knn_graph(X, 30)
            geo._embed._GRAPH_CACHE.clear()
            return g, geo.embed(X, knn=g, random_state=0)

        t_plain, Y_plain = timed(plain, args.repeats)
        t_cold, (graph, Y_ours) = timed(ours_cold, args.repeats)

        def ours_cached_graph():
            geo._embed._GRAPH_CACHE.clear()  # the kNN graph exists; the fuzzy graph is rebuilt
            return geo.embed(X, knn=graph, random_state=0)

        t_cached, Y_cached = timed(ours_cached_graph, args.repeats)
        same = bool(np.array_equal(Y_cached, Y_ours))
        t_live, Y_live = timed(lambda: geo.embed(X, knn=graph, init=Y_ours, n_epochs=30, random_state=0), 3)
        tw_plain, tw_ours, tw_live = trust(X, Y_plain), trust(X, Y_ours), trust(X, Y_live)
        rows.append((n, t_plain, t_cold, t_cached, t_live, tw_plain, tw_ours, tw_live, same))
        print(
            f"N={n}: plain {t_plain:.2f}s tw {tw_plain:.4f} | ours cold {t_cold:.2f}s ({t_plain / t_cold:.2f}x) "
            f"graph cached {t_cached:.2f}s ({t_plain / t_cached:.2f}x) tw {tw_ours:.4f} | live {t_live:.3f}s "
            f"tw {tw_live:.4f} | reproducible {same}",
            flush=True,
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## UMAP: our path vs plain umap-learn",
        "",
        f"`python benchmarks/embed.py` on {platform.machine()}, {os.cpu_count()} cores, umap-learn "
        f"{umap.__version__}, {torch.get_num_threads()} torch threads; load average {load:.1f} at the end (the "
        "machine is shared, so absolute times are noisy; both paths run side by side in one process). "
        "Data: ten curved 3-d clusters in R^128 plus noise. Trustworthiness (k=10) on one random "
        "2000-point subsample. *plain* = `umap.UMAP().fit_transform(X)` (unseeded: parallel SGD); *ours* "
        "= `geo.embed(X, knn=geo.knn_graph(X, 30))` seeded (single-threaded SGD, reproducible), PCA start, "
        "100 epochs (N ≤ 10k) / 50 (N > 10k); *graph cached* = the layer's kNN graph already exists; "
        "*live* = 30 epochs from the previous layout.",
        "",
        f"numba compile, first call in a process: ours {t_compile_ours:.1f} s (run by `geo.warm_up_umap()` in a "
        f"background thread), plain umap-learn {t_compile_plain:.1f} s.",
        "",
        "| N | plain (s) | ours cold (s) | plain / ours | graph cached (s) | plain / cached | live pass (s) "
        "| trust plain | trust ours | trust live | seeded rerun identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, tp, tc, tg, tl, wp, wo, wl, same in rows:
        lines.append(
            f"| {n} | {tp:.2f} | {tc:.2f} | {tp / tc:.2f} | {tg:.2f} | {tp / tg:.2f} | {tl:.3f} | {wp:.4f} | "
            f"{wo:.4f} | {wl:.4f} | {same} |"
        )
    out = pathlib.Path(__file__).with_name("RESULTS_embed.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
