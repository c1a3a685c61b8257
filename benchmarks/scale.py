"""The Explorer at real sizes: time to first picture, to the current layer's UMAP, to everything settled, peak RSS.

The issue's model: an MLP 128→512→256→10 trained briefly on 10-class synthetic data (class means
on a sphere plus unit noise), explored at three layers (the two hidden ReLU outputs and the logits;
the current layer is the last hidden one). Each size runs in a fresh subprocess (so peak RSS is that
size's own), and in the same process, after the Explorer, the peers on the current layer's
activations: plain ``umap.UMAP().fit_transform`` and faiss exact kNN (``IndexFlatL2``, k = k_max + 1,
self included). Ratios are the Explorer's time over the peer's. ``first picture`` counts from the moment the
constructor returns (the Explorer appears) until the embedding draws anything (the landmarks'
PCA); the other Explorer numbers count from the constructor call: ``every sample's PCA`` = the
embedding holds all N positions, ``UMAP`` = its title says UMAP, ``settled`` = every view idle
(``ex.wait()``). ``finished`` in the JSON lists each queued item's completion time. With
``--current-only-sizes`` a run stops after the current layer's UMAP; with ``--first-only-sizes``
(used for 10^6) after every sample's PCA, without peers. Peak RSS is read when the Explorer is
done, before the peers run; ``growth`` is that peak minus the resident memory when the Explorer
appeared (libraries imported, model and inputs loaded), the part that grows with N, set beside the
issue's bound (twice the activations plus, per layer, a float32 + int64 ``[N, k_max + 8]`` graph
and tables). ``faiss exact kNN, every layer`` is one exact search of each layer (k_max + 1
neighbours): the floor of ``settled`` when every layer's graph is exact.

Usage::

    python benchmarks/scale.py [--sizes 10000 50000 100000] [--first-only-sizes 1000000] [--out results.json]

Prints a markdown table. The machine is shared: read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """10 classes in 128-d: class means on a sphere of radius 4, unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(10, 128))
    means *= 4.0 / np.linalg.norm(means, axis=1, keepdims=True)
    y = rng.integers(0, 10, size=n)
    X = means[y] + rng.normal(size=(n, 128))
    return X.astype(np.float32), y.astype(np.int64)


def trained_model(X: np.ndarray, y: np.ndarray, epochs: int = 2):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(128, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt, yt = torch.from_numpy(X[:20000]), torch.from_numpy(y[:20000])
    for _ in range(epochs):
        for s in range(0, len(Xt), 256):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[s : s + 256]), yt[s : s + 256]).backward()
            opt.step()
    return model.eval()


def _poll(predicate, timeout: float) -> float | None:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter()
        time.sleep(0.02)
    return None


def run_one(n: int, mode: str, timeout: float) -> dict:
    """One size, in this process: the Explorer, then the peers.

    ``mode``: ``"all"`` (until settled), ``"current"`` (until the current layer's UMAP) or
    ``"first"`` (until every sample's PCA; no peers).
    """
    import torch

    import geowidgets as gw
    from geowidgets import geometry as geo

    X, y = make_data(n)
    model = trained_model(X, y)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    geo.warm_up_umap()  # the numba compile is another issue's (disk cache); time the work, not the compile
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    ex = gw.Explorer(model, Xt, yt, layers=["1", "3", "4"], method="umap")
    t_shown = time.perf_counter()  # the Explorer appears when its constructor returns
    rss_shown = _rss_mb()  # libraries imported, model and data loaded: what N-dependent work adds to
    # (what, layer, seconds since the call, peak RSS MB so far) per queued item
    finished: list[tuple[str, str | None, float, float]] = []
    ex.scheduler.listeners.append(
        lambda item: finished.append(
            (
                *ex.scheduler.describe(item),
                round(time.perf_counter() - t0, 2),
                round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            )
        )
    )
    t_ctor = t_shown - t0
    layer = "3"
    ex.layer = layer
    t_first = _poll(lambda: ex.embedding.n_points > 0 and ex.embedding.layer == layer, timeout)
    t_full = _poll(lambda: ex.embedding.n_points == n, timeout)
    t_umap = None
    if mode != "first":
        t_umap = _poll(lambda: ex.embedding.title.endswith("UMAP") and ex.embedding.layer == layer, timeout)
    out = {
        "n": n,
        "constructor_s": t_ctor,
        "first_picture_s": None if t_first is None else t_first - t_shown,
        "first_picture_points": ex.embedding.n_points if t_full is None else None,
        "all_points_pca_s": None if t_full is None else t_full - t0,
        "umap_s": None if t_umap is None else t_umap - t0,
        "settled_s": None,
        "history": [list(h) for h in ex.scheduler.history],
    }
    if mode == "all":
        ok = ex.wait(timeout)
        out["settled_s"] = time.perf_counter() - t0 if ok else None
    out["history"] = [list(h) for h in ex.scheduler.history]
    out["finished"] = [list(f) for f in finished]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mb"] = rss0
    out["rss_shown_mb"] = rss_shown
    if mode == "all":  # how each layer's graph was searched (exact, or an index with its recall)
        out["graphs"] = {
            name: [g.engine, round(float(g.recall), 4), [list(p) for p in getattr(g, "params", ())]]
            for name in ex.session.layers
            if ex.session.has_graph(name)
            for g in [ex.session.knn_graph(name)]
        }
    out["k_max"] = ex.session.k_max
    every = {name: ex.session.features(name).numpy() for name in ex.session.layers}
    acts = every[layer]
    out["activations_mb"] = sum(a.nbytes for a in every.values()) / 2**20
    ex.close()
    if mode == "first":
        out["umap_learn_s"] = out["faiss_exact_knn_s"] = out["faiss_exact_every_layer_s"] = None
        return out
    # Peers on the same layer's activations, same process, after the Explorer.
    import umap

    t = time.perf_counter()
    umap.UMAP().fit_transform(acts)
    out["umap_learn_s"] = time.perf_counter() - t
    try:
        import faiss

        def exact(a: np.ndarray) -> float:
            t = time.perf_counter()
            index = faiss.IndexFlatL2(a.shape[1])
            index.add(a)
            index.search(a, out["k_max"] + 1)
            return time.perf_counter() - t

        out["faiss_exact_knn_s"] = exact(acts)
        # The floor of "settled" on exact neighbours: one exact kNN search of every layer.
        out["faiss_exact_every_layer_s"] = out["faiss_exact_knn_s"] + sum(
            exact(a) for name, a in every.items() if name != layer
        )
    except ImportError:
        out["faiss_exact_knn_s"] = out["faiss_exact_every_layer_s"] = None
    return out


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; peak RSS where /proc is absent)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument("--current-only-sizes", type=int, nargs="*", default=[])
    parser.add_argument(
        "--first-only-sizes", type=int, nargs="*", default=[], help="sizes timed only to every sample's PCA"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--out", default=None, help="also write the raw results as JSON")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(run_one(args.one, args.mode, args.timeout)), flush=True)
        return
    rows = []
    jobs = [(n, "all") for n in args.sizes] + [(n, "current") for n in args.current_only_sizes]
    jobs += [(n, "first") for n in args.first_only_sizes]
    for n, mode in jobs:
        cmd = [sys.executable, __file__, "--one", str(n), "--timeout", str(args.timeout), "--mode", mode]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"N={n}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT ") :]))
        print(f"N={n} done", file=sys.stderr, flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)

    def f(v):
        return "—" if v is None else f"{v:.1f}"

    def target_mb(r):  # the bound: 2x the activations plus O(N k): per layer, a graph and tables
        n_layers = 3
        per_layer = r["n"] * (r["k_max"] + 8) * (4 + 8) * 2 / 2**20  # float32 distances + int64 indices, twice
        return 2 * r["activations_mb"] + n_layers * per_layer

    def ratio(a, b):
        return "—" if a is None or not b else f"{a / b:.2f}×"

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} at the end\n"
    )
    print(
        "| N | constructor s | first picture s (after it returns) | every sample's PCA s | current UMAP s "
        "| settled s | umap-learn s | UMAP / umap-learn | faiss exact kNN s | faiss exact kNN, every layer s "
        "| settled / every layer's exact kNN | peak RSS MB | growth MB | activations MB | growth target MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']:,} | {f(r['constructor_s'])} | {f(r['first_picture_s'])} | {f(r['all_points_pca_s'])} | "
            f"{f(r['umap_s'])} | "
            f"{f(r['settled_s'])} | {f(r['umap_learn_s'])} | {ratio(r['umap_s'], r['umap_learn_s'])} | "
            f"{f(r['faiss_exact_knn_s'])} | {f(r.get('faiss_exact_every_layer_s'))} | "
            f"{ratio(r['settled_s'], r.get('faiss_exact_every_layer_s'))} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] - r['rss_shown_mb']:.0f} | {r['activations_mb']:.0f} | {target_mb(r):.0f} |"
        )


if __name__ == "__main__":
    main()
