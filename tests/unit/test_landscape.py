"""interpolate / loss_barrier / hessian_* / loss_surface against independent references.

References: state-dict arithmetic, ``torch.func.functional_call`` on hand-interpolated weights,
``torch.optim.swa_utils.update_bn``, and the dense Hessian of a tiny MLP
(``torch.autograd.functional.hessian`` + ``numpy.linalg.eigh``): its moments, Gauss-quadrature
identities and ``scipy.stats.wasserstein_distance`` for the spectral density.
"""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm, wasserstein_distance
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


# ---- spectral density (SLQ) ----------------------------------------------------------------------------------------
def _per_vector(r):
    bounds = np.cumsum(r.lanczos_steps)[:-1]
    return np.split(r.nodes, bounds), np.split(r.weights * r.n_vectors, bounds)


def test_slq_is_gauss_quadrature_of_each_starting_vector():
    X, y = _blobs(60, seed=14)
    model = _mlp(8, hidden=12)
    H = _dense_hessian(model, F.cross_entropy, X, y)
    P, m = H.shape[0], 8
    r = geo.hessian_spectral_density(model, F.cross_entropy, X, y, n_vectors=3, lanczos_steps=m, seed=5)
    assert r.n_params == P and r.n_vectors == 3 and list(r.lanczos_steps) == [m] * 3
    rng = np.random.default_rng(5)  # the documented starting vectors
    for nodes, weights in zip(*_per_vector(r)):
        q = rng.standard_normal(P)
        q /= np.linalg.norm(q)
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        Hq = q.copy()
        for power in range(1, 2 * m):  # m-point Gauss quadrature is exact up to degree 2m - 1
            Hq = H @ Hq
            exact = q @ Hq
            assert weights @ nodes**power == pytest.approx(exact, rel=1e-6, abs=1e-9 * np.abs(H).max() ** power)
    ev = np.linalg.eigvalsh(H)
    assert r.nodes.max() <= ev.max() * (1 + 1e-9) and r.nodes.min() >= ev.min() - 1e-9 * abs(ev).max()


def test_slq_density_moments_and_wasserstein_match_dense_spectrum():
    X, y = _blobs(80, seed=15)
    model = _train(_mlp(9, hidden=12), X, y, steps=200)
    H = _dense_hessian(model, F.cross_entropy, X, y)
    ev = np.linalg.eigvalsh(H)
    P, n_v = len(ev), 20
    r = geo.hessian_spectral_density(model, F.cross_entropy, X, y, n_vectors=n_v, lanczos_steps=30, seed=1)
    # for v uniform on the unit sphere, Var[v'Av] = 2 Var_i(a_i) / (P + 2) over A's eigenvalues a_i
    for power in (1, 2):
        exact = (ev**power).mean()  # tr(H^k) / P
        se = math.sqrt(2 * (ev**power).var() / (P + 2) / n_v)
        assert abs(r.moment(power) - exact) < 4 * se
    assert r.moment(0) == pytest.approx(1.0, abs=1e-12)
    w1 = wasserstein_distance(r.nodes, ev, u_weights=r.weights)
    trivial = wasserstein_distance([ev.mean()], ev)  # everything at the true mean
    assert w1 < 0.02 * (ev.max() - ev.min()) and w1 < 0.3 * trivial
    # the smoothed density is the nodes' Gaussian mixture and is close to the dense spectrum smoothed alike
    ref = norm.pdf(r.grid[:, None], r.nodes, r.sigma) @ r.weights
    np.testing.assert_allclose(r.density, ref, rtol=1e-10, atol=1e-12 * ref.max())
    assert np.trapezoid(r.density, r.grid) == pytest.approx(1.0, abs=1e-4)
    wide = geo.hessian_spectral_density(
        model, F.cross_entropy, X, y, n_vectors=n_v, lanczos_steps=30, seed=1, sigma=0.05 * np.ptp(ev)
    )
    dense = norm.pdf(wide.grid[:, None], ev, wide.sigma).mean(1)
    l1 = np.trapezoid(np.abs(wide.density - dense), wide.grid)
    assert l1 < 0.2 and np.trapezoid(dense, wide.grid) == pytest.approx(1.0, abs=1e-3)
    # Lanczos finds the isolated top eigenvalues first
    np.testing.assert_allclose(r.top_ritz_values(2), ev[::-1][:2], rtol=1e-4)


def test_slq_grid_sigma_and_small_models():
    X, y = _blobs(40, seed=16)
    model = _mlp(10, hidden=2)  # P = 17: Lanczos stops at P (or earlier, once the Krylov space is invariant)
    model.train()
    H = _dense_hessian(model, F.cross_entropy, X, y)
    model.train()
    P = H.shape[0]
    grid = np.linspace(-1.0, 2.0, 301)
    r = geo.hessian_spectral_density(model, F.cross_entropy, X, y, n_vectors=2, lanczos_steps=100, grid=grid, sigma=0.1)
    assert model.training
    np.testing.assert_array_equal(r.grid, grid)
    assert r.sigma == 0.1 and r.density.shape == (301,) and np.all(r.lanczos_steps <= P)
    # with the whole Krylov space the quadrature is exact for every polynomial: the moments of H itself
    q = np.random.default_rng(0).standard_normal(P)
    q /= np.linalg.norm(q)
    nodes, weights = _per_vector(r)[0][0], _per_vector(r)[1][0]
    assert weights @ nodes**6 == pytest.approx(q @ np.linalg.matrix_power(H, 6) @ q, rel=1e-6)
    assert r.count_above(-1e9) == pytest.approx(P)
    ev = np.linalg.eigvalsh(H)
    r_default = geo.hessian_spectral_density(model, F.cross_entropy, X, y, n_vectors=2, lanczos_steps=5)
    assert r_default.sigma == pytest.approx(0.005 * np.ptp(r_default.nodes))
    assert r_default.grid[0] == pytest.approx(r_default.nodes.min() - 5 * r_default.sigma)
    assert r_default.grid.size == 1000 and ev.min() - 1e-9 <= r_default.nodes.min()


def test_count_outliers_is_the_largest_relative_gap():
    r = geo.hessian_spectral_density(_mlp(0), F.cross_entropy, *_blobs(30), n_vectors=1, lanczos_steps=4)
    assert r.count_outliers([10.0, 8.0, 7.0, 1.0, 0.5, 0.4]) == 3
    assert r.count_outliers([0.4, 10.0, 0.5, 1.0]) == 1  # order does not matter
    assert r.count_outliers([5.0, 4.0, -0.1, -3.0]) == 2  # a jump to a non-positive value is the cut
    assert r.count_outliers([10.0, 8.0, 7.0, 1.0, 0.5, 0.001], max_outliers=4) == 3
    with pytest.raises(ValueError, match="positive"):
        r.count_outliers([-1.0, -2.0])
    with pytest.raises(ValueError, match="two"):
        r.count_outliers([1.0])


def test_trained_classifier_hessian_has_a_bulk_near_zero_and_about_one_outlier_per_class():
    from geowidgets.datasets import toy_demo

    demo = toy_demo("blobs", n=600, hidden=16, epochs=40)  # 4 classes, P = 388, float32
    C = len(demo.class_names)
    model, X, y = demo.model, demo.inputs, demo.labels
    dense_model = _as_double(model)
    H = _dense_hessian(dense_model, F.cross_entropy, X.double(), y)
    ev = np.linalg.eigvalsh(H)[::-1]
    top = geo.hessian_eigenvalues(model, F.cross_entropy, X, y, k=10)
    np.testing.assert_allclose(top, ev[:10], rtol=1e-3, atol=1e-4 * ev[0])
    r = geo.hessian_spectral_density(model, F.cross_entropy, X, y, n_vectors=10, lanczos_steps=60)
    n_out = r.count_outliers(top)
    assert n_out == r.count_outliers(ev[:10]) == r.count_outliers()  # dense, ARPACK and Ritz values agree
    # measured: 3 = C - 1 outliers (3.43, 2.60, 2.39, then 0.94, 0.48, ...)
    assert abs(n_out - C) <= 1
    # the bulk: nearly all of the spectral mass within 5% of the top eigenvalue of zero, as for H itself
    bulk = np.abs(r.nodes) < 0.05 * ev[0]
    dense_bulk = np.mean(np.abs(ev) < 0.05 * ev[0])
    assert dense_bulk > 0.9
    assert abs(r.weights[bulk].sum() - dense_bulk) < 0.05
    # P * (weight above the cut): each outlier's weight is P * mean_l (q_l . u_i)^2, about chi2(n_v) / n_v
    assert r.count_above(0.5 * ev[n_out - 1]) == pytest.approx(n_out, abs=3 * math.sqrt(2 * n_out / r.n_vectors))


def _as_double(model):
    return copy.deepcopy(model).double()


def test_slq_errors():
    X, y = _blobs(30)
    model = _mlp(0)
    for kwargs, match in (
        ({"n_vectors": 0}, "n_vectors"),
        ({"lanczos_steps": 0}, "lanczos_steps"),
        ({"sigma": 0.0}, "sigma"),
        ({"grid": 1}, "grid"),
        ({"grid": [0.0, 0.0, 1.0]}, "increasing"),
        ({"params": ["nope"]}, "not parameters"),
    ):
        with pytest.raises(ValueError, match=match):
            geo.hessian_spectral_density(model, F.cross_entropy, X, y, **kwargs)
    with pytest.raises(ValueError, match="labels"):
        geo.hessian_spectral_density(model, F.cross_entropy, X, y[:20])


# ---- loss surface --------------------------------------------------------------------------------------------------
def _unflatten(flat, model, names=None):
    params = dict(model.named_parameters())
    names = list(params) if names is None else names
    sizes = [params[n].numel() for n in names]
    chunks = torch.split(torch.as_tensor(flat), sizes)
    return {n: c.view(params[n].shape) for n, c in zip(names, chunks)}


def _functional_loss(model, X, y, step, loss_fn=F.cross_entropy):
    """Loss and accuracy at the weights theta + step (a name -> tensor mapping), eval mode."""
    weights = {n: p.detach() + step[n].to(p.dtype) if n in step else p.detach() for n, p in model.named_parameters()}
    was = model.training
    model.eval()
    with torch.no_grad():
        z = functional_call(model, weights, (X,))
    model.train(was)
    return float(loss_fn(z, y)), float((z.argmax(1) == y).double().mean())


def test_loss_surface_random_matches_functional_call_and_restores_the_model():
    X, y = _blobs(70, seed=17)
    model = _train(_mlp(11, hidden=8, dropout=True), X, y, steps=100)
    model.train()
    before = _state(model)
    s = geo.loss_surface(model, F.cross_entropy, X, y, directions="random", span=0.8, resolution=5, batch_size=32)
    assert model.training  # mode restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit
    np.testing.assert_array_equal(s.alphas, np.linspace(-0.8, 0.8, 5))
    assert s.center_index == (2, 2) and s.directions == "random" and s.eigenvalues is None
    model.eval()
    with torch.no_grad():
        z = model(X)
    model.train()
    assert s.center_loss == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-12)
    assert s.loss[2, 2] == s.center_loss and s.accuracy[2, 2] == s.center_accuracy
    d1, d2 = _unflatten(s.d1, model), _unflatten(s.d2, model)
    for i, a in enumerate(s.alphas):  # along d1 (beta = 0)
        loss, acc = _functional_loss(model, X, y, {n: a * d1[n] for n in d1})
        assert s.loss[i, 2] == pytest.approx(loss, rel=1e-12) and s.accuracy[i, 2] == pytest.approx(acc, abs=1e-15)
    loss, _ = _functional_loss(model, X, y, {n: s.alphas[0] * d1[n] + s.betas[4] * d2[n] for n in d1})
    assert s.loss[0, 4] == pytest.approx(loss, rel=1e-12)
    assert s.loss.max() > s.center_loss  # the plane leaves the trained minimum
    again = geo.loss_surface(model, F.cross_entropy, X, y, directions="random", span=0.8, resolution=5)
    np.testing.assert_array_equal(again.d1, s.d1)
    np.testing.assert_allclose(again.loss, s.loss, rtol=1e-12)


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_filter_normalisation_per_filter_and_layer_normalisation():
    torch.manual_seed(0)
    X, y = torch.randn(24, 1, 4, 4), torch.arange(24) % 3
    model = _ConvBN()
    model.train()
    model(X)  # non-trivial running statistics
    model.eval()
    before = _state(model)
    s = geo.loss_surface(model, F.cross_entropy, X, y, directions="random", resolution=3, seed=4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    params = dict(model.named_parameters())
    for flat in (s.d1, s.d2):
        d = _unflatten(flat, model)
        for n, p in params.items():
            if p.ndim <= 1:  # biases and BatchNorm weight / bias
                assert not d[n].any(), n
            else:
                got = d[n].reshape(d[n].shape[0], -1).norm(dim=1)
                want = p.detach().double().reshape(p.shape[0], -1).norm(dim=1)
                torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    assert not np.allclose(s.d1, s.d2)
    layer = geo.loss_surface(model, F.cross_entropy, X, y, directions="random", resolution=3, normalize="layer")
    d = _unflatten(layer.d1, model)
    assert float(d["conv.weight"].norm()) == pytest.approx(float(params["conv.weight"].detach().norm()), rel=1e-6)
    rows = d["fc.weight"].norm(dim=1) / params["fc.weight"].detach().double().norm(dim=1)
    assert rows.std() > 1e-3  # layer normalisation does not equalise rows
    assert float(s.loss[1, 1]) == pytest.approx(float(F.cross_entropy(model(X), y).detach()), rel=1e-6)


def test_loss_surface_hessian_directions_are_top_eigenvectors():
    X, y = _blobs(60, seed=18)
    model = _train(_mlp(12, hidden=6), X, y, steps=150)
    H = _dense_hessian(model, F.cross_entropy, X, y)
    vals, vecs = np.linalg.eigh(H)
    h = 1e-3
    s = geo.loss_surface(model, F.cross_entropy, X, y, span=h, resolution=3)
    assert s.directions == "hessian"
    np.testing.assert_allclose(s.eigenvalues, vals[::-1][:2], rtol=1e-4)
    assert abs(s.d1 @ vecs[:, -1]) == pytest.approx(1.0, abs=1e-6)
    assert abs(s.d2 @ vecs[:, -2]) == pytest.approx(1.0, abs=1e-6)
    # second differences of the loss along each direction are the curvatures d' H d
    curv_1 = (s.loss[0, 1] + s.loss[2, 1] - 2 * s.loss[1, 1]) / h**2
    curv_2 = (s.loss[1, 0] + s.loss[1, 2] - 2 * s.loss[1, 1]) / h**2
    assert curv_1 == pytest.approx(s.d1 @ H @ s.d1, rel=1e-4)
    assert curv_2 == pytest.approx(s.d2 @ H @ s.d2, rel=1e-4)


def test_loss_surface_given_directions_and_a_parameter_subset():
    X, y = _blobs(50, seed=19)
    a, b = _mlp(13), _mlp(14)
    diff = {n: pb.detach() - pa.detach() for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters())}
    s = geo.loss_surface(
        a,
        F.cross_entropy,
        X,
        y,
        directions=(diff, {"0.bias": diff["0.bias"]}),
        span=(0.0, 1.0),
        resolution=3,
        normalize=None,
    )
    assert s.directions == "given" and s.center_index == (0, 0)
    with torch.no_grad():
        end = float(F.cross_entropy(b(X), y))
    assert s.loss[2, 0] == pytest.approx(end, rel=1e-12)  # alpha = 1 along the difference is model b
    d2 = _unflatten(s.d2, a)
    assert torch.equal(d2["0.bias"], diff["0.bias"]) and not d2["0.weight"].any()
    loss, _ = _functional_loss(a, X, y, {n: 0.5 * diff[n] + d2[n] for n in diff})
    assert s.loss[1, 2] == pytest.approx(loss, rel=1e-12)
    # a subset, directions given flat over it; filter normalisation of the given vectors
    sub = ["2.weight", "2.bias"]
    flat = torch.cat([diff[n].reshape(-1) for n in sub])
    t = geo.loss_surface(a, F.cross_entropy, X, y, directions=(flat, flat.flip(0)), resolution=3, params=sub)
    assert t.param_names == tuple(sub) and t.d1.shape == (flat.numel(),)
    d = _unflatten(t.d1, a, sub)
    torch.testing.assert_close(d["2.weight"].norm(dim=1), a[2].weight.detach().norm(dim=1), rtol=1e-12, atol=0)
    assert not d["2.bias"].any()
    loss, _ = _functional_loss(a, X, y, {n: -1.0 * d[n] for n in sub})
    assert t.loss[0, 1] == pytest.approx(loss, rel=1e-12)


def test_loss_surface_float32_regression_has_no_accuracy_and_restores_exactly():
    X, _ = _blobs(40, seed=20)
    X = X.float()
    target = torch.sin(X[:, :1])
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 1))
    before = _state(model)
    s = geo.loss_surface(model, F.mse_loss, X, target, directions="random", resolution=4, span=2.0)
    assert s.accuracy is None and s.center_accuracy is None and s.center_index is None  # 0 is off an even grid
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    d1, d2 = _unflatten(s.d1, model), _unflatten(s.d2, model)
    a, b = s.alphas[0], s.betas[3]
    with torch.no_grad():
        w = {n: p + (a * d1[n]).float() + (b * d2[n]).float() for n, p in model.named_parameters()}
        ref = float(F.mse_loss(functional_call(model, w, (X,)), target))
    assert s.loss[0, 3] == pytest.approx(ref, rel=1e-5)  # float32 weights: rounding of the steps


def test_loss_surface_errors():
    X, y = _blobs(30)
    model = _mlp(0)
    P = sum(p.numel() for p in model.parameters())
    for kwargs, match in (
        ({"directions": "pca"}, "directions"),
        ({"directions": (np.ones(P), np.ones(P - 1))}, f"P = {P}"),
        ({"directions": ({"nope": torch.zeros(1)}, {})}, "nope"),
        ({"directions": ({"0.weight": torch.zeros(2)}, {})}, "shape"),
        ({"directions": ({"0.bias": torch.ones(5)}, {"0.weight": torch.ones(5, 3)})}, "d1 is zero"),
        ({"resolution": 1}, "resolution"),
        ({"span": -1.0}, "span"),
        ({"span": (1.0, 0.0)}, "span"),
        ({"normalize": "unit"}, "normalize"),
    ):
        with pytest.raises(ValueError, match=match):
            geo.loss_surface(model, F.cross_entropy, X, y, **kwargs)
    before = _state(model)
    with pytest.raises(ValueError, match="labels"):
        geo.loss_surface(model, F.cross_entropy, X, y[:20], directions="random")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
