"""Probe.capture(..., store=path): on-disk activations equal the in-memory capture, reopen, and fill from a cluster."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from geowidgets import Probe
from geowidgets.probe import Activations


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


def _mapped_file(t: torch.Tensor) -> str:
    """The file whose memory map holds ``t``'s data (from /proc/self/maps), or "" if none."""
    maps = "/proc/self/maps"
    try:
        lines = open(maps).read().splitlines()
    except OSError:
        pytest.skip("no /proc/self/maps to check the memory map")
    address = t.data_ptr()
    for line in lines:
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return parts[5] if len(parts) > 5 else ""
    return ""


def test_store_capture_equals_in_memory_capture(tmp_path):
    model = _model()
    X = torch.randn(1001, 16)
    y = torch.arange(1001) % 3
    memory = Probe(model, device="cpu").capture(X, batch_size=128, progress=False)
    stored = Probe(model, device="cpu").capture(X, batch_size=128, progress=False, store=tmp_path)
    assert stored.layers == memory.layers
    for name in memory.layers:
        assert torch.equal(stored[name], memory[name])
        assert stored[name].dtype == torch.float32
        assert _mapped_file(stored[name]).startswith(str(tmp_path))
    assert torch.equal(stored.outputs, memory.outputs)
    assert stored.shapes == memory.shapes and stored.pooling == memory.pooling
    # Labels of (x, y) pairs are stored too.
    from torch.utils.data import DataLoader, TensorDataset

    pairs = DataLoader(TensorDataset(X, y), batch_size=100)
    with_labels = Probe(model, device="cpu").capture(pairs, progress=False, store=tmp_path / "pairs")
    assert torch.equal(with_labels.labels, y)


def test_store_reopens_in_another_process_and_probes_read_it(tmp_path):
    model = _model()
    X = torch.randn(300, 16)
    memory = Probe(model, layers=["1", "3"], device="cpu").capture(X, progress=False)
    Probe(model, layers=["1", "3"], device="cpu").capture(X, progress=False, store=tmp_path)
    code = (
        "import sys, torch; from geowidgets.probe import Activations; "
        f"a = Activations.open({str(tmp_path)!r}); "
        "torch.save({k: a[k].clone() for k in a}, sys.argv[1])"
    )
    out = tmp_path / "back.pt"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    back = torch.load(out)
    for name in ("1", "3"):
        assert torch.equal(back[name], memory[name])
    reopened = Activations.open(tmp_path)
    # A probe reads the memory-mapped tensor like any other.
    from geowidgets import geometry as geo

    expected = geo.knn(memory["3"].numpy(), 5)
    got = geo.knn(reopened["3"], 5)
    assert np.array_equal(got[1].numpy(), expected[1])
    reopened["3"][0, 0] = 123.0  # copy-on-write: the file is unchanged
    assert torch.equal(Activations.open(tmp_path)["3"], memory["3"])


def test_store_errors(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="tokens"):
        Probe(model, device="cpu").capture(torch.randn(4, 3, 16), pooling="tokens", progress=False, store=tmp_path)
    with pytest.raises(FileNotFoundError, match="no geowidgets capture"):
        Activations.open(tmp_path / "empty")


def test_capture_runs_on_a_local_dask_cluster_into_a_chunked_store(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    model = _model()
    X = torch.randn(2000, 16)
    bounds = [(s, min(s + 500, 2000)) for s in range(0, 2000, 500)]

    def capture_partition(part: tuple[int, int]) -> str:
        start, stop = part
        # Each task probes its own copy of the model (forward hooks are per model object).
        probe = Probe(copy.deepcopy(model), layers=["1", "3"], device="cpu")
        path = tmp_path / f"part-{start:06d}"
        probe.capture(X[start:stop], batch_size=128, progress=False, store=path)
        return str(path)

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        paths = client.gather(client.map(capture_partition, bounds))
    memory = Probe(model, layers=["1", "3"], device="cpu").capture(X, progress=False)
    parts = [Activations.open(p) for p in paths]
    for name in ("1", "3"):
        assert torch.equal(torch.cat([part[name] for part in parts]), memory[name])
    assert torch.equal(torch.cat([part.outputs for part in parts]), memory.outputs)
