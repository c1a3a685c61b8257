"""Full layer profile (every metric) on one synthetic layer of N=10k, D=512.

Usage: python benchmarks/probes.py [--n 10000] [--d 512] [--blas-threads T] [--no-write | --append]
Prints per-metric seconds for a cold profile, then the cost of slider moves served from the caches
(DSE at another t, coding rate at another ε, agreement at another k), and writes
benchmarks/RESULTS_probes.md.

The data: 10 classes, each a Gaussian on its own random 16-d subspace of R^D around a class
centre, plus isotropic noise (so every metric has something to measure). float32, CPU.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import numpy as np
import torch


def synthetic_layer(n: int, d: int, n_classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = 2.0 * rng.normal(size=(n_classes, d))
    bases = [np.linalg.qr(rng.normal(size=(d, 16)))[0] for _ in range(n_classes)]
    X = centres[y] + 0.1 * rng.normal(size=(n, d))
    for c in range(n_classes):
        rows = y == c
        X[rows] += rng.normal(size=(int(rows.sum()), 16)) @ bases[c].T
    return torch.from_numpy(X.astype(np.float32)), y


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--blas-threads", type=int, default=None, help="limit BLAS/OpenMP threads (threadpoolctl)")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS_probes.md")
    parser.add_argument("--append", action="store_true", help="append to RESULTS_probes.md instead of replacing it")
    args = parser.parse_args()

    from geowidgets import geometry as geo
    from geowidgets.geometry._profile import DEFAULT_PROFILE_METRICS

    limiter = None
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.blas_threads)
        torch.set_num_threads(args.blas_threads)

    X, y = synthetic_layer(args.n, args.d)
    metrics = (*DEFAULT_PROFILE_METRICS, "dsmi")
    load_before = os.getloadavg()[0]
    total_start = time.perf_counter()
    df = geo.layer_profile({"layer": X}, y, metrics=metrics, k=10)
    total = time.perf_counter() - total_start
    graph = df.attrs["graph_seconds"]["layer"]

    moves = {
        "dse at t=3 (cached eigenvalues)": timed(lambda: geo.dse(X, t=3)),
        "coding_rate at eps^2=0.1 (cached spectra)": timed(lambda: geo.coding_rate(X, y, eps=0.1**0.5)),
        "rankme again (cached singular values)": timed(lambda: geo.rankme(X)),
        "knn_agreement at k=15 from a k_max=20 graph": 0.0,
    }
    graph_obj = geo.knn_graph(X, 20)
    moves["knn_agreement at k=15 from a k_max=20 graph"] = timed(
        lambda: geo.knn_label_agreement(X, y, 15, knn=graph_obj)
    )
    load_after = os.getloadavg()[0]
    if limiter is not None:
        limiter.unregister()

    threads = args.blas_threads if args.blas_threads is not None else f"default ({torch.get_num_threads()} torch)"
    lines = [
        f"## Layer profile: every metric, N={args.n}, D={args.d} (float32, CPU)",
        "",
        f"`python benchmarks/probes.py` on {platform.machine()}, {os.cpu_count()} cores, threads: {threads}; "
        f"1-min load average {load_before:.1f} before / {load_after:.1f} after (the machine is shared, so "
        "absolute times vary run to run). Synthetic data: 10 classes on separate 16-d subspaces plus noise.",
        "",
        "| metric | value | n_used | seconds |",
        "|---|---|---|---|",
        f"| kNN graph (k_max=20, shared by twonn/mle/knn_agreement) | | {args.n} | {graph:.3f} |",
    ]
    for row in df.itertuples():
        lines.append(f"| {row.metric} | {row.value:.4g} | {row.n_used} | {row.seconds:.3f} |")
    lines += [
        f"| **total** (layer_profile wall time) | | | **{total:.2f}** |",
        "",
        "Slider moves after the profile (served from the caches, no recomputation of distances or spectra):",
        "",
        "| move | seconds |",
        "|---|---|",
    ]
    lines += [f"| {name} | {seconds:.4f} |" for name, seconds in moves.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = pathlib.Path(__file__).with_name("RESULTS_probes.md")
        if args.append and out.exists():
            text = out.read_text() + "\n" + text
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
