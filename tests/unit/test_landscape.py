"""interpolate / loss_barrier / hessian_eigenvalues / hessian_trace against independent references.

References: state-dict arithmetic, ``torch.func.functional_call`` on hand-interpolated weights,
``torch.optim.swa_utils.update_bn``, and the dense Hessian of a tiny MLP
(``torch.autograd.functional.hessian`` + ``numpy.linalg.eigh``).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from geowidgets import geometry as geo


def _mlp(seed, hidden=5, dropout=False, bn=False, d_in=3, n_cls=3):
    torch.manual_seed(seed)
    layers = [nn.Linear(d_in, hidden)]
    if bn:
        layers.append(nn.BatchNorm1d(hidden))
    layers.append(nn.Tanh())
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(hidden, n_cls))
    return nn.Sequential(*layers).double()


def _blobs(n=60, seed=0, d=3, n_cls=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_cls
    centres = 2.0 * torch.randn(n_cls, d, generator=g, dtype=torch.float64)
    return centres[y] + torch.randn(n, d, generator=g, dtype=torch.float64), y


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- interpolate ---------------------------------------------------------------------------------------------------
def _bn_pair():
    a, b = _mlp(0, bn=True), _mlp(1, bn=True)
    X, _ = _blobs(40)
    for model, passes in ((a, 3), (b, 5)):  # running stats and num_batches_tracked differ
        model.train()
        for _ in range(passes):
            model(X + 0.1 * passes)
    return a, b


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 1.5])
def test_interpolate_is_state_dict_arithmetic(alpha):
    a, b = _bn_pair()
    sa, sb = _state(a), _state(b)
    mid = geo.interpolate(a, b, alpha)
    assert type(mid) is type(a) and mid is not a
    got = mid.state_dict()
    for name, ta in sa.items():
        if ta.is_floating_point():
            torch.testing.assert_close(got[name], (1 - alpha) * ta + alpha * sb[name], rtol=1e-15, atol=1e-15)
        else:
            assert torch.equal(got[name], ta), name  # num_batches_tracked comes from model_a
    assert int(got["1.num_batches_tracked"]) == 3
    if alpha == 1.0:  # exactly model_b's floating tensors
        assert all(torch.equal(got[k], sb[k]) for k in sb if sb[k].is_floating_point())
    # inputs untouched, and the copy is independent of them
    for model, before in ((a, sa), (b, sb)):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    with torch.no_grad():
        mid[0].weight.add_(1.0)
    assert torch.equal(a[0].weight, sa["0.weight"])


def test_interpolate_refuses_mismatched_architectures():
    with pytest.raises(ValueError, match=r"'0\.weight'.*\(5, 3\).*\(6, 3\)"):
        geo.interpolate(_mlp(0), _mlp(1, hidden=6), 0.5)
    deeper = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    with pytest.raises(ValueError, match=r"'4\.weight'.*only model_b"):
        geo.interpolate(_mlp(0), deeper, 0.5)
    with pytest.raises(ValueError, match="same architecture"):
        geo.interpolate(nn.Linear(3, 3), _mlp(0), 0.5)
    with pytest.raises(ValueError, match="parameter '1.weight'.*'2.weight'"):
        geo.interpolate(_mlp(0, bn=True), _mlp(0), 0.5)
    no_stats = _mlp(0, bn=True)
    no_stats[1] = nn.BatchNorm1d(5, track_running_stats=False).double()
    with pytest.raises(ValueError, match="buffer '1.running_mean': only model_a"):
        geo.interpolate(_mlp(0, bn=True), no_stats, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        geo.interpolate(_mlp(0), _mlp(1), float("nan"))


def test_interpolate_bn_inputs_match_swa_update_bn_and_batch_statistics():
    a, b = _bn_pair()
    X, _ = _blobs(70, seed=3)
    got = geo.interpolate(a, b, 0.4, bn_inputs=X.numpy(), batch_size=32)
    ref = geo.interpolate(a, b, 0.4)
    torch.optim.swa_utils.update_bn(DataLoader(TensorDataset(X), batch_size=32), ref)
    torch.testing.assert_close(got[1].running_mean, ref[1].running_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got[1].running_var, ref[1].running_var, rtol=1e-12, atol=1e-14)
    assert got[1].momentum == a[1].momentum and got.training == a.training
    # one batch: the running statistics are that batch's mean and unbiased variance of the BN input
    one = geo.interpolate(a, b, 0.4, bn_inputs=X, batch_size=1000)
    h = X @ (0.6 * a[0].weight + 0.4 * b[0].weight).T.detach() + (0.6 * a[0].bias + 0.4 * b[0].bias).detach()
    torch.testing.assert_close(one[1].running_mean, h.mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(one[1].running_var, h.var(0, unbiased=True), rtol=1e-12, atol=1e-14)
    assert one[1].momentum == a[1].momentum  # restored after the re-estimate


# ---- loss_barrier --------------------------------------------------------------------------------------------------
def _manual_path(a, b, X, y, alphas, loss_fn=F.cross_entropy):
    """Loss and accuracy at hand-interpolated weights via functional_call (eval mode)."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    bufa, bufb = dict(a.named_buffers()), dict(b.named_buffers())
    a.eval()
    losses, accs = [], []
    for al in alphas:
        weights = {k: (1 - al) * pa[k].detach() + al * pb[k].detach() for k in pa}
        weights.update({k: (1 - al) * v + al * bufb[k] if v.is_floating_point() else v for k, v in bufa.items()})
        with torch.no_grad():
            z = functional_call(a, weights, (X,))
        losses.append(float(loss_fn(z, y)))
        accs.append(float((z.argmax(1) == y).double().mean()))
    return np.array(losses), np.array(accs)


def _train(model, X, y, steps=300, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    return model


def test_loss_barrier_matches_functional_interpolation():
    X, y = _blobs(90, seed=4)
    a, b = _train(_mlp(0, hidden=8), X, y), _train(_mlp(1, hidden=8), X, y)
    r = geo.loss_barrier(a, b, X, y, steps=9, batch_size=32)
    loss, acc = _manual_path(a, b, X, y, r.alphas)
    np.testing.assert_array_equal(r.alphas, np.linspace(0, 1, 9))
    np.testing.assert_allclose(r.loss, loss, rtol=1e-12)
    np.testing.assert_allclose(r.accuracy, acc, rtol=0, atol=1e-15)
    excess = loss - ((1 - r.alphas) * loss[0] + r.alphas * loss[-1])
    assert r.barrier == pytest.approx(excess.max(), rel=1e-10, abs=1e-14)
    assert r.barrier_alpha == r.alphas[np.argmax(excess)]
    err = 1 - acc
    assert r.error_barrier == pytest.approx((err - ((1 - r.alphas) * err[0] + r.alphas * err[-1])).max(), abs=1e-12)
    np.testing.assert_allclose(r.linear_path, loss - excess, rtol=1e-12)
    assert not r.bn_reset


def test_permuted_copy_has_equal_endpoints_and_a_barrier():
    X, y = _blobs(120, seed=5)
    a = _train(_mlp(2, hidden=8), X, y, steps=400)
    b = _mlp(2, hidden=8)  # the same function with its hidden units permuted
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        b[0].weight.copy_(a[0].weight[perm])
        b[0].bias.copy_(a[0].bias[perm])
        b[2].weight.copy_(a[2].weight[:, perm])
        b[2].bias.copy_(a[2].bias)
    r = geo.loss_barrier(a, b, X, y, steps=11)
    assert r.loss[0] == pytest.approx(r.loss[-1], rel=1e-12)
    loss, _ = _manual_path(a, b, X, y, r.alphas)
    assert r.barrier == pytest.approx((loss - loss[0]).max(), rel=1e-10)
    assert r.barrier > r.loss[0] and 0 < r.barrier_alpha < 1  # the midpoint more than doubles the loss


def test_convex_loss_of_a_linear_model_has_no_barrier():
    X, y = _blobs(80, seed=6)
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3).double(), nn.Linear(3, 3).double()
    r = geo.loss_barrier(a, b, X, y, steps=21)
    assert r.barrier == 0.0 and r.barrier_alpha in (0.0, 1.0)  # cross-entropy is convex in the weights
    assert np.all(r.loss[1:-1] < r.linear_path[1:-1])


def test_loss_barrier_reset_bn_matches_update_bn():
    a, b = _bn_pair()
    X, y = _blobs(64, seed=7)
    r = geo.loss_barrier(a, b, X, y, steps=5, reset_bn=True, batch_size=16)
    assert r.bn_reset
    for al, loss in zip(r.alphas, r.loss):
        ref = geo.interpolate(a, b, float(al))
        torch.optim.swa_utils.update_bn(DataLoader(TensorDataset(X), batch_size=16), ref)
        ref.eval()
        with torch.no_grad():
            assert loss == pytest.approx(float(F.cross_entropy(ref(X), y)), rel=1e-12)
    plain = geo.loss_barrier(a, b, X, y, steps=5)
    assert not np.allclose(plain.loss, r.loss)  # the stale interpolated statistics change the path


def test_loss_barrier_regression_targets_have_no_accuracy():
    X, _ = _blobs(50, seed=8)
    t = torch.sin(X).sum(1, keepdim=True)
    torch.manual_seed(1)
    a, b = nn.Linear(3, 1).double(), nn.Linear(3, 1).double()
    r = geo.loss_barrier(a, b, X, t.numpy(), steps=3, loss_fn=F.mse_loss)
    assert r.accuracy is None and r.error_barrier is None
    loss, _ = _manual_path(a, b, X, t, r.alphas, loss_fn=F.mse_loss)
    np.testing.assert_allclose(r.loss, loss, rtol=1e-12)


def test_loss_barrier_errors():
    X, y = _blobs(30)
    a, b = _mlp(0), _mlp(1)
    with pytest.raises(ValueError, match="steps"):
        geo.loss_barrier(a, b, X, y, steps=1)
    with pytest.raises(ValueError, match="29 labels|labels hold 29"):
        geo.loss_barrier(a, b, X, y[:29])
    with pytest.raises(ValueError, match="'0.weight'"):
        geo.loss_barrier(a, _mlp(1, hidden=4), X, y)


# ---- Hessian -------------------------------------------------------------------------------------------------------
def _dense_hessian(model, loss_fn, X, y, names=None):
    model.eval()
    params = dict(model.named_parameters())
    names = list(params) if names is None else names
    shapes = [params[n].shape for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names])

    def f(flat):
        chunks = torch.split(flat, [math.prod(s) for s in shapes])
        return loss_fn(functional_call(model, {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}, (X,)), y)

    return torch.autograd.functional.hessian(f, flat0).numpy()


@pytest.mark.parametrize("batch_size", [1000, 16])  # one cached graph; several batches re-run per product
def test_hessian_eigenvalues_match_dense_hessian(batch_size):
    X, y = _blobs(60, seed=9)
    model = _mlp(3, dropout=True)
    model.train()  # the Hessian is taken in eval mode, and the mode is restored
    H = _dense_hessian(model, F.cross_entropy, X, y)
    model.train()
    ref = np.linalg.eigvalsh(H)
    vals, vecs = geo.hessian_eigenvalues(
        model, F.cross_entropy, X, y, k=4, batch_size=batch_size, tol=1e-10, return_eigenvectors=True
    )
    assert model.training
    np.testing.assert_allclose(vals, ref[::-1][:4], rtol=1e-4)
    np.testing.assert_allclose(H @ vecs, vecs * vals, atol=1e-6 * abs(ref).max())
    low = geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=2, which="SA", tol=1e-10)
    np.testing.assert_allclose(low, ref[:2], rtol=1e-4, atol=1e-8 * abs(ref).max())
    mag = geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=3, which="LM", tol=1e-10)
    np.testing.assert_allclose(mag, ref[np.argsort(-np.abs(ref))][:3], rtol=1e-4)


def test_hessian_of_a_parameter_subset_and_frozen_parameters():
    X, y = _blobs(50, seed=10)
    model = _mlp(4)
    H = _dense_hessian(model, F.cross_entropy, X, y, names=["2.weight", "2.bias"])
    ref = np.linalg.eigvalsh(H)[::-1][:3]
    got = geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=3, params=["2.weight", "2.bias"], tol=1e-10)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    for p in model[0].parameters():
        p.requires_grad_(False)
    frozen = geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=3, tol=1e-10)
    np.testing.assert_allclose(frozen, ref, rtol=1e-4)
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad  # flags restored


class _WithUnusedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _mlp(7)
        self.unused = nn.Linear(3, 2).double()  # off the loss's path: zero rows and columns of H

    def forward(self, x):
        return self.body(x)


def test_hessian_with_a_parameter_off_the_loss_path():
    X, y = _blobs(50, seed=13)
    model = _WithUnusedHead()
    H = _dense_hessian(model.body, F.cross_entropy, X, y)
    ref = np.linalg.eigvalsh(H)[::-1][:3]
    assert ref[-1] > 0  # the zero block of the unused head does not enter the top 3
    got = geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=3, tol=1e-10)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    est = geo.hessian_trace(model, F.cross_entropy, X, y, n_samples=200)
    sd = math.sqrt(2 * ((H**2).sum() - (np.diag(H) ** 2).sum()))  # the unused block adds no variance
    assert abs(est.trace - np.trace(H)) < 4 * sd / math.sqrt(200)


def test_hessian_regression_loss_numpy_inputs():
    X, _ = _blobs(40, seed=11)
    t = torch.cos(X[:, :1])
    model = _mlp(5, n_cls=1)
    H = _dense_hessian(model, F.mse_loss, X, t)
    got = geo.hessian_eigenvalues(model, F.mse_loss, X.numpy(), t.numpy(), k=2, tol=1e-10)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(H)[::-1][:2], rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1000, 25])
def test_hessian_trace_within_hutchinson_error_bars(batch_size):
    X, y = _blobs(60, seed=12)
    model = _mlp(6)
    H = _dense_hessian(model, F.cross_entropy, X, y)
    m = 400
    # exact standard deviation of one Rademacher sample v'Hv: sqrt(2 * sum_{i != j} H_ij^2)
    sd = math.sqrt(2 * ((H**2).sum() - (np.diag(H) ** 2).sum()))
    est = geo.hessian_trace(model, F.cross_entropy, X, y, n_samples=m, seed=0, batch_size=batch_size)
    assert abs(est.trace - np.trace(H)) < 4 * sd / math.sqrt(m)
    assert est.std_error == pytest.approx(sd / math.sqrt(m), rel=0.25)
    assert est.samples.shape == (m,) and float(est) == est.trace
    again = geo.hessian_trace(model, F.cross_entropy, X, y, n_samples=m, seed=0, batch_size=batch_size)
    np.testing.assert_allclose(again.samples, est.samples, rtol=1e-12)


def test_hessian_errors():
    X, y = _blobs(30)
    model = _mlp(0)
    n_params = sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match=f"P = {n_params}"):
        geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=n_params)
    with pytest.raises(ValueError, match="not parameters"):
        geo.hessian_eigenvalues(model, F.cross_entropy, X, y, params=["nope"])
    with pytest.raises(ValueError, match="labels"):
        geo.hessian_eigenvalues(model, F.cross_entropy, X, y[:20])
    with pytest.raises(ValueError, match="scalar"):
        geo.hessian_trace(model, lambda z, t: F.cross_entropy(z, t, reduction="none"), X, y)
    with pytest.raises(ValueError, match="which"):
        geo.hessian_eigenvalues(model, F.cross_entropy, X, y, which="BE")
    with pytest.raises(ValueError, match="n_samples"):
        geo.hessian_trace(model, F.cross_entropy, X, y, n_samples=0)
