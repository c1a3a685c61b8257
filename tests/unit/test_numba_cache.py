"""umap-learn's numba kernels are cached on disk: a second fresh process loads them instead of compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("umap")

# Kernels embed(method="umap") runs that umap-learn itself compiles without cache=True.
KERNELS = (
    "umap.umap_.smooth_knn_dist",
    "umap.umap_.compute_membership_strengths",
    "umap.layouts._nb_optimize_layout_euclidean_single_epoch",
)

# The child imports umap-learn (and pynndescent, whose own cache=True kernels then load from their
# usual cache) before pointing numba's cache at the test's directory: numba reads ``CACHE_DIR`` (the
# ``NUMBA_CACHE_DIR`` variable) when a kernel's cache is created, so only the kernels geowidgets
# enables land in the temporary directory, and pynndescent is not recompiled into it.
CHILD = """
import json, sys
import numba
import numpy as np
import umap.umap_
from numba.core.registry import CPUDispatcher
numba.config.CACHE_DIR = sys.argv[1]
from geowidgets.geometry import embed
from geowidgets.geometry._embed import enable_umap_disk_cache

X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
embed(X, method="umap", n_neighbors=8, n_epochs=5, random_state=0)
stats = {}
for name in __KERNELS__:
    mod, attr = name.rsplit(".", 1)
    d = getattr(sys.modules[mod], attr)
    assert isinstance(d, CPUDispatcher)
    stats[name] = [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()), len(d.signatures)]
print(json.dumps({"enabled": enable_umap_disk_cache(), "stats": stats}))
""".replace("__KERNELS__", repr(KERNELS))


def run_child(cache_dir) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_CACHE_DIR", None)
    cmd = [sys.executable, "-c", CHILD, str(cache_dir)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def index_files(cache_dir) -> set[str]:
    return {f for _, _, files in os.walk(cache_dir) for f in files if f.endswith(".nbi")}


def test_second_process_loads_umap_kernels_from_disk(tmp_path):
    first = run_child(tmp_path)
    assert set(KERNELS) <= set(first["enabled"])
    # First process: nothing on disk yet, so each kernel missed the cache and compiled once ...
    for name, (hits, misses, n_sigs) in first["stats"].items():
        assert (hits, misses, n_sigs) == (0, 1, 1), name
    # ... and wrote an index file named after its Python function.
    written = index_files(tmp_path)
    for name in ("smooth_knn_dist", "compute_membership_strengths", "_optimize_layout_euclidean_single_epoch"):
        assert any(f".{name}-" in f for f in written), (name, sorted(written))
    second = run_child(tmp_path)
    # Second process: every kernel was loaded from the cache, none compiled.
    for name, (hits, misses, n_sigs) in second["stats"].items():
        assert (hits, misses, n_sigs) == (1, 0, 1), name


def test_parallel_sgd_epoch_is_left_uncached():
    # It shares its Python function (and so numba's cache index) with the serial epoch.
    from numba.core.caching import NullCache

    from geowidgets.geometry._embed import enable_umap_disk_cache

    enabled = enable_umap_disk_cache()
    import umap.layouts as layouts

    assert "umap.layouts._nb_optimize_layout_euclidean_single_epoch_parallel" not in enabled
    assert isinstance(layouts._nb_optimize_layout_euclidean_single_epoch_parallel._cache, NullCache)
    assert not isinstance(layouts._nb_optimize_layout_euclidean_single_epoch._cache, NullCache)
    assert enable_umap_disk_cache() == enabled
