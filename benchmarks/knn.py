"""Exact kNN: geowidgets vs faiss-cpu IndexFlatL2 vs scikit-learn brute, run side by side.

Usage: python benchmarks/knn.py [--repeats 3] [--quick]
Prints median seconds and ratios (ours / peer) and writes benchmarks/RESULTS_knn.md.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import time

import numpy as np
import torch


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only N=10k")
    args = parser.parse_args()

    import faiss
    from sklearn.neighbors import NearestNeighbors

    from geowidgets import geometry as geo

    k = 10
    sizes = (
        [(10_000, 128), (10_000, 512)] if args.quick else [(10_000, 128), (10_000, 512), (50_000, 128), (50_000, 512)]
    )
    rows = []
    for n, d in sizes:
        X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
        Xt = torch.from_numpy(X)

        def ours():
            geo.knn(Xt, k)

        def flat():
            index = faiss.IndexFlatL2(d)
            index.add(X)
            index.search(X, k + 1)

        def sk():
            NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors()

        reps = args.repeats if n <= 10_000 else max(1, args.repeats - 2)
        t_ours, t_faiss = median_time(ours, reps), median_time(flat, reps)
        t_sk = median_time(sk, reps) if n <= 10_000 else float("nan")
        rows.append((n, d, t_ours, t_faiss, t_sk))
        print(
            f"N={n:>6} d={d:>4}  ours {t_ours:7.3f}s  faiss {t_faiss:7.3f}s  sklearn {t_sk:7.3f}s  "
            f"ours/faiss {t_ours / t_faiss:5.2f}  ours/sklearn {t_ours / t_sk:5.2f}"
        )

    lines = [
        "## kNN (exact, k=10, self excluded, float32, N=M)",
        "",
        f"`python benchmarks/knn.py` on {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"faiss {faiss.__version__}; medians over repeats, peers run side by side in one process.",
        "",
        "| N | d | ours (s) | faiss IndexFlatL2 (s) | sklearn brute (s) | ours / faiss | ours / sklearn |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, d, a, b, c in rows:
        lines.append(f"| {n} | {d} | {a:.3f} | {b:.3f} | {c:.3f} | {a / b:.2f} | {a / c:.2f} |")
    out = pathlib.Path(__file__).with_name("RESULTS_knn.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
