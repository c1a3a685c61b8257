"""kNN graphs at scale: exact (geowidgets, faiss IndexFlatL2) vs approximate (HNSW, IVF, pynndescent).

Every engine builds a k=50 graph (self excluded) of the same data in the same process, one after
the other, so the ratios are comparable even on a busy machine. Recall@10 of each graph is measured
on *all* rows against geowidgets' exact graph (a returned neighbour is a hit when its exact
distance is at most the true 10th distance).

Two kinds of data, float32:

* ``structured``: activation-like. Latent points on 8 dimensions (20 Gaussian clusters) pushed
  through a fixed random two-layer ReLU network to D dimensions, plus 1% isotropic noise;
* ``gaussian``: isotropic N(0, I_D), the hardest case for any index (no low-dimensional structure).

Usage::

    python benchmarks/knn_scale.py [--sizes 10000 30000] [--dims 128 768] [--repeats 3]
        [--kinds structured gaussian] [--engines flat hnsw ivf nndescent auto]

Prints a markdown table (median seconds over the repeats, recall@10, ratio to exact).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch


def structured(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Activation-like rows: 8-d clustered latents through a random ReLU network, plus 1% noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(20, 8))
    z = centres[rng.integers(0, 20, size=n)] + rng.normal(size=(n, 8))
    W1 = rng.normal(size=(8, 256)) / np.sqrt(8)
    W2 = rng.normal(size=(256, d)) / np.sqrt(256)
    H = np.maximum(z @ W1, 0.0) @ W2
    H = np.maximum(H, 0.0)  # post-ReLU activations: non-negative, with a common offset
    H += 0.01 * H.std() * rng.normal(size=H.shape)
    return H.astype(np.float32)


def gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def recall_at(found_dist: np.ndarray, exact_dist: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the first k found neighbours within the true k-th distance (float32 tolerance)."""
    kth = exact_dist[:, k - 1 : k].astype(np.float64)
    f = found_dist[:, :k].astype(np.float64)
    return float((f <= kth * (1 + 1e-6) + 1e-12).mean())


def faiss_distances(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Exact float64 distances of the pairs (row, idx[row, j]), for the peer's raw answers."""
    out = np.empty(idx.shape, np.float64)
    for s in range(0, X.shape[0], 2048):
        q = X[s : s + 2048].astype(np.float64)
        nb = X[idx[s : s + 2048]].astype(np.float64)
        out[s : s + 2048] = np.sqrt(((nb - q[:, None, :]) ** 2).sum(-1))
    return out


def run(n: int, d: int, kind: str, repeats: int, k: int, engines: list[str]) -> list[dict]:
    import faiss

    from geowidgets import geometry as geo
    from geowidgets.geometry._ann import approximate_knn_graph

    X = structured(n, d) if kind == "structured" else gaussian(n, d)
    Xt = torch.from_numpy(X)
    rows = []
    exact_dist = None

    def timed(name, fn):
        nonlocal exact_dist
        times, out = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        dist, extra = out
        if name == "exact (geowidgets)":
            exact_dist = dist
        rows.append(
            dict(
                n=n,
                d=d,
                kind=kind,
                engine=name,
                seconds=statistics.median(times),
                reps=repeats,
                recall=recall_at(dist, exact_dist),
                extra=extra,
            )
        )
        print(f"  {n:>7} x {d:<4} {kind:<10} {name:<22} {rows[-1]['seconds']:8.2f} s  "
              f"recall@10 {rows[-1]['recall']:.4f}  {extra}", flush=True)  # fmt: skip

    def exact():
        g = geo.knn_graph(Xt, k_max=k)
        return g.dist.numpy(), ""

    def flat():
        index = faiss.IndexFlatL2(d)
        index.add(X)
        _, idx = index.search(X, k + 1)
        idx = idx[:, 1:]  # (self is first unless a duplicate ties it)
        return np.sort(faiss_distances(X, idx), axis=1), ""

    def ours(engine):
        def fn():
            g = approximate_knn_graph(Xt, k_max=k, engine=engine)
            params = ", ".join(f"{a}={b}" for a, b in g.params)
            return g.dist.numpy(), f"{g.engine}: sample recall {g.recall:.4f}; {params}"

        return fn

    timed("exact (geowidgets)", exact)
    named = {
        "flat": ("faiss IndexFlatL2", flat),
        "hnsw": ("hnsw (geowidgets)", ours("hnsw")),
        "ivf": ("ivf (geowidgets)", ours("ivf")),
        "nndescent": ("pynndescent (geowidgets)", ours("nndescent")),
        "auto": ("auto (geowidgets)", ours("auto")),
    }
    for engine in engines:
        timed(*named[engine])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 768])
    parser.add_argument("--kinds", nargs="+", default=["structured", "gaussian"])
    parser.add_argument("--repeats", type=int, default=3, help="repeats below 10^5 rows (1 at 10^5)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["flat", "hnsw", "nndescent"],
        help="besides exact: flat hnsw ivf nndescent auto",
    )
    args = parser.parse_args()

    from geowidgets.geometry._ann import approximate_knn_graph

    # Compile pynndescent's numba kernels and warm faiss before anything is timed.
    approximate_knn_graph(gaussian(2000, 16), k_max=10, engine="nndescent", recall_sample=64)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}", flush=True)  # fmt: skip
    rows = []
    for n in args.sizes:
        for d in args.dims:
            for kind in args.kinds:
                rows += run(n, d, kind, args.repeats if n < 100_000 else 1, args.k, args.engines)
    print()
    print("| N | D | data | engine | seconds (median) | repeats | / exact | recall@10 | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {}
    for r in rows:
        if r["engine"].startswith("exact"):
            base[(r["n"], r["d"], r["kind"])] = r["seconds"]
        ratio = r["seconds"] / base[(r["n"], r["d"], r["kind"])]
        print(f"| {r['n']:,} | {r['d']} | {r['kind']} | {r['engine']} | {r['seconds']:.2f} | {r['reps']} | "
              f"{ratio:.2f} | {r['recall']:.4f} | {r['extra']} |")  # fmt: skip


if __name__ == "__main__":
    main()
