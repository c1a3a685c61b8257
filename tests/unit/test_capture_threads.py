"""A forward pass the user makes while geowidgets works on the model (another thread) is neither recorded nor patched.

The fault these tests hold down: the Explorer captures in the background, and a notebook cell that
ran ``model(x)`` meanwhile fired the capture's hooks, so that pass's rows were kept as a batch of
the capture (1797 digits became 3338 rows, and the kNN graph named samples that do not exist).
Each test makes the overlap certain with events instead of relying on timing.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from geowidgets import Probe, Session
from geowidgets.probe import list_layers, patch_activation


class _Pausing(nn.Module):
    """Linear -> ReLU -> Linear whose forward, in a marked thread, waits after the first layer until told to go on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2 = nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)
        self.pause_thread: int | None = None
        self.paused, self.resume = threading.Event(), threading.Event()

    def forward(self, x):
        h = self.act(self.fc1(x))
        if threading.get_ident() == self.pause_thread and not self.resume.is_set():
            self.paused.set()
            assert self.resume.wait(30)
        return self.fc2(h)


def _user_forward_during(model: _Pausing, work, user_x: torch.Tensor):
    """Run ``work`` in a thread, pause it inside its first forward, run the user's ``model(user_x)``, resume."""
    result: list = []
    errors: list = []

    def run():
        model.pause_thread = threading.get_ident()
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            model.paused.set()

    t = threading.Thread(target=run)
    t.start()
    assert model.paused.wait(30), "the work never reached the model"
    with torch.inference_mode():
        user_out = model(user_x)
    model.resume.set()
    t.join(30)
    assert not t.is_alive()
    if errors:
        raise errors[0]
    return result[0], user_out


def test_capture_ignores_a_forward_pass_from_another_thread():
    model = _Pausing().eval()
    X = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    user_x = torch.randn(17, 5, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = {"fc1": model.fc1(X), "act": model.act(model.fc1(X))}
        user_expected = model.fc2(model.act(model.fc1(user_x)))
    probe = Probe(model, layers=["fc1", "act"], device="cpu")
    acts, user_out = _user_forward_during(model, lambda: probe.capture(X, batch_size=10, progress=False), user_x)
    for name in ("fc1", "act"):
        assert acts[name].shape == (40, 8), name  # not 40 + 17 rows
        torch.testing.assert_close(acts[name], expected[name], rtol=0, atol=0)
    torch.testing.assert_close(user_out, user_expected, rtol=0, atol=0)


def test_session_capture_keeps_one_row_per_sample_while_the_user_runs_the_model():
    model = _Pausing().eval()
    X = torch.randn(64, 5, generator=torch.Generator().manual_seed(3))
    session = Session(model, X, torch.arange(64) % 3, layers=["fc1", "act"], batch_size=16)
    with torch.inference_mode():
        expected = model.act(model.fc1(X))
    assert session.task == "classification"  # the few rows that tell the shapes: run now, so the pause hits the capture
    acts, _ = _user_forward_during(model, session.activations, X[:5])
    assert acts["act"].shape == (64, 8)
    torch.testing.assert_close(session.features("act"), expected, rtol=0, atol=0)
    idx = session.knn_graph("act").idx
    assert int(idx.max()) < 64 and int(idx.min()) >= 0


def test_patch_does_not_reach_a_forward_pass_from_another_thread():
    model = _Pausing().eval()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        user_expected = model(x)
    zeros = torch.zeros(4, 8)

    def patched_forward():
        with patch_activation(model, "act", zeros), torch.inference_mode():
            return model(x)

    patched_out, user_out = _user_forward_during(model, patched_forward, x)
    torch.testing.assert_close(user_out, user_expected, rtol=0, atol=0)  # the user's pass is not patched
    torch.testing.assert_close(patched_out, model.fc2(zeros).detach(), rtol=0, atol=0)


def test_list_layers_sees_only_its_own_forward_pass():
    model = _Pausing().eval()
    infos, _ = _user_forward_during(model, lambda: list_layers(model, torch.zeros(2, 5)), torch.zeros(9, 5))
    assert {i.name: (i.output_shape, i.calls) for i in infos} == {
        "fc1": ((2, 8), 1),
        "act": ((2, 8), 1),
        "fc2": ((2, 3), 1),
    }


class _SequenceFirst(nn.Module):
    """Takes [B, L, F] and runs a sequence-first GRU, whose output is [L, B, H]."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 6)  # batch_first=False
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.gru(x.transpose(0, 1))
        return self.head(out[-1])


def test_a_layer_without_the_batch_first_is_refused():
    X = torch.randn(10, 7, 4)
    probe = Probe(_SequenceFirst().eval(), layers=["gru"], device="cpu")
    with pytest.raises(ValueError, match=r"'gru' gave 7 rows for a batch of 5 samples.*batch_first"):
        probe.capture(X, batch_size=5, progress=False)


def test_capture_gives_every_module_its_own_mode_back():
    """A training model with a frozen (eval-mode) BatchNorm keeps it frozen after a capture."""
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2))
    model.train()
    model[1].eval()  # frozen statistics, as when fine-tuning
    before = {name: m.training for name, m in model.named_modules()}
    stats = model[1].running_mean.clone()
    acts = Probe(model, layers=["2"], device="cpu").capture(torch.randn(32, 4), batch_size=8, progress=False)
    assert {name: m.training for name, m in model.named_modules()} == before
    torch.testing.assert_close(model[1].running_mean, stats)  # captured in eval mode: statistics untouched
    assert acts["2"].shape == (32, 6)


class _SwitchesToTraining(nn.Module):
    """Calls ``model.train()`` during its 2nd forward pass, as a training cell in another thread would."""

    def __init__(self):
        super().__init__()
        self.lin, self.calls = nn.Linear(3, 3), 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            self.train()
        return self.lin(x)


def test_a_switch_to_training_mode_during_the_capture_stops_it():
    model = _SwitchesToTraining().eval()
    with pytest.raises(ValueError, match=r"switched to training mode during the capture"):
        Probe(model, layers=["lin"], device="cpu").capture(torch.randn(12, 3), batch_size=4, progress=False)


def test_list_layers_and_slices_give_every_module_its_own_mode_back():
    from geowidgets.geometry import Plane, decision_slice

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).train()
    model[1].eval()
    before = {name: m.training for name, m in model.named_modules()}
    list_layers(model, torch.zeros(2, 2))
    assert {name: m.training for name, m in model.named_modules()} == before
    plane = Plane.through(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    decision_slice(model, plane, resolution=8)
    assert {name: m.training for name, m in model.named_modules()} == before


class _ThreadedParallel(nn.DataParallel):
    """Runs the wrapped module on a worker thread, as DataParallel's replicas do on several GPUs."""

    def forward(self, x):
        out: list = []
        t = threading.Thread(target=lambda: out.append(self.module(x)))
        t.start()
        t.join()
        return out[0]


def test_a_model_run_on_other_threads_is_refused_with_the_way_out():
    model = _ThreadedParallel(nn.Sequential(nn.Linear(3, 3), nn.ReLU())).eval()
    with pytest.raises(ValueError, match=r"'module.0' never ran.*nn.DataParallel.*pass model.module"):
        Probe(model, layers=["module.0"], device="cpu").capture(torch.randn(4, 3), progress=False)
    acts = Probe(model.module, layers=["0"], device="cpu").capture(torch.randn(4, 3), progress=False)
    assert acts["0"].shape == (4, 3)


def test_a_head_left_in_training_mode_runs_in_eval_mode_and_keeps_its_mode():
    """The session's wrapper lists only the model's modules; the head (Dropout here) must still be switched."""
    import geowidgets as gw

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU()).eval()
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 3))  # training mode: dropout would zero half the features
    X = torch.randn(50, 4)
    session = gw.Session(encoder, X, torch.arange(50) % 3, head=head, k_max=5)
    logits = session.logits.clone()
    assert head.training and head[0].training  # given back as it was
    with torch.no_grad():
        expected = head[1](encoder(X))  # eval mode: dropout is the identity
    torch.testing.assert_close(logits, expected, rtol=1e-6, atol=1e-6)
