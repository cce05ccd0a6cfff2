"""DASH-InfoNCE and InfoNCE: reference equality, hand values, symmetry, metadata effects."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from s2v_core.train.losses import dash_infonce, dash_weights, info_nce

NAN = float("nan")


def unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def unknown_meta(n):
    return torch.full((n,), NAN), torch.full((n,), -1), torch.full((n,), -1), torch.arange(n)


def random_batch(seed, N=6, T=4, D=5, pad=True):
    g = torch.Generator().manual_seed(seed)
    za = F.normalize(torch.randn(N, T, D, generator=g), dim=-1)
    zb = F.normalize(torch.randn(N, T, D, generator=g), dim=-1)
    valid = torch.rand(N, T, generator=g) > (0.25 if pad else -1.0)
    age = torch.rand(N, generator=g) * 60 + 20
    age[0] = NAN
    sex = torch.randint(-1, 2, (N,), generator=g)
    site = torch.randint(-1, 3, (N,), generator=g)
    night = torch.tensor([0, 0, 1, 2, 2, 3, 4, 5][:N])
    return za, zb, valid, age, sex, site, night


def reference_loss(za, zb, valid, age, sex, site, night, *, tau=0.2, margin=0.5, eps=1e-6):
    """Slow loop version written straight from METHOD.md section 4."""
    N, T, _ = za.shape

    def raw_w(i, j):
        if i == j:
            return 1.0
        if night[i] == night[j]:
            return eps
        a_i, a_j = float(age[i]), float(age[j])
        k = 1.0 if math.isnan(a_i) or math.isnan(a_j) else math.exp(-abs(a_i - a_j) / 20.0)
        if sex[i] >= 0 and sex[j] >= 0 and sex[i] != sex[j]:
            k *= 0.8
        k = min(max(k, 0.0), 1.0)
        if site[i] >= 0 and site[j] >= 0:
            k *= 1.3 if site[i] == site[j] else 0.8
        return k + eps

    def one_direction(x, y):
        total, count = 0.0, 0
        for t in range(T):
            for i in range(N):
                if not valid[i, t]:
                    continue
                negs = [j for j in range(N) if j != i and valid[j, t]]
                true_negs = [j for j in negs if night[j] != night[i]]  # same night: false negatives
                mean = sum(raw_w(i, j) for j in true_negs) / len(true_negs) if true_negs else 1.0
                s_ii = float(x[i, t] @ y[i, t])
                denom = math.exp(s_ii / tau)
                for j in negs:
                    h = 1.0 if night[i] == night[j] else 0.0
                    s_ij = float(x[i, t] @ y[j, t])
                    denom += raw_w(i, j) / mean * math.exp((s_ij - margin * h) / tau)
                total += -math.log(math.exp(s_ii / tau) / denom)
                count += 1
        return total, count

    ab, n = one_direction(za, zb)
    ba, _ = one_direction(zb, za)
    return (ab + ba) / (2 * n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference(seed):
    batch = random_batch(seed)
    got = dash_infonce(*batch)
    assert got.item() == pytest.approx(reference_loss(*batch), rel=1e-5)


def test_equals_plain_infonce_and_cross_entropy_without_metadata():
    za, zb, *_ = random_batch(4, pad=False)
    N, T, _ = za.shape
    valid = torch.ones(N, T, dtype=torch.bool)
    age, sex, site, night = unknown_meta(N)
    dash = dash_infonce(za, zb, valid, age, sex, site, night)
    plain = dash_infonce(za, zb, valid, age, sex, site, night, weighting=False)
    logits = torch.einsum("itd,jtd->tij", za, zb) / 0.2  # (T, N, N)
    target = torch.arange(N).repeat(T)
    ce = 0.5 * (
        F.cross_entropy(logits.reshape(T * N, N), target)
        + F.cross_entropy(logits.transpose(1, 2).reshape(T * N, N), target)
    )
    # unknown metadata and distinct nights: every raw weight is 1 + eps, normalised to exactly 1
    torch.testing.assert_close(dash, ce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(plain, ce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(info_nce(za, zb, valid), ce, rtol=1e-6, atol=1e-6)


def test_weighting_false_ignores_metadata_and_same_night():
    batch = random_batch(5)
    za, zb, valid = batch[:3]
    got = dash_infonce(*batch, weighting=False)
    torch.testing.assert_close(got, info_nce(za, zb, valid))
    assert not torch.allclose(got, dash_infonce(*batch))


def test_hand_computed_two_windows():
    # s = identity; one negative per anchor, weight normalised to 1:
    # loss = -log(e^5 / (e^5 + e^0)) = log(1 + e^-5) in both directions
    z = unit([[[1.0, 0.0]], [[0.0, 1.0]]])  # (2, 1, 2)
    valid = torch.ones(2, 1, dtype=torch.bool)
    loss = dash_infonce(z, z, valid, *unknown_meta(2))
    assert loss.item() == pytest.approx(0.006715348489117967, rel=1e-5)
    # same night: the only negative is a false negative; it keeps weight eps and the margin
    same = dash_infonce(z, z, valid, torch.tensor([NAN, NAN]), torch.tensor([-1, -1]),
                        torch.tensor([-1, -1]), torch.tensor([7, 7]))  # fmt: skip
    assert same.item() == pytest.approx(math.log(1 + 1e-6 * math.exp(-5 - 2.5)), rel=1e-4)


def test_hand_computed_three_windows_with_ages():
    # z0 = (1, 0), z1 = (0.6, 0.8), z2 = (0, 1); za = zb; ages 40, 40, 60; sexes and sites equal
    z = unit([[[1.0, 0.0]], [[0.6, 0.8]], [[0.0, 1.0]]])
    valid = torch.ones(3, 1, dtype=torch.bool)
    age, sex, site = (
        torch.tensor([40.0, 40.0, 60.0]),
        torch.tensor([1, 1, 1]),
        torch.tensor([0, 0, 0]),
    )
    loss = dash_infonce(z, z, valid, age, sex, site, torch.arange(3))
    eps, s = 1e-6, [[1.0, 0.6, 0.0], [0.6, 1.0, 0.8], [0.0, 0.8, 1.0]]
    raw = [[1.0, 1.3 + eps, 1.3 * math.exp(-1) + eps]]
    raw.append([raw[0][1], 1.0, raw[0][2]])
    raw.append([raw[0][2], raw[0][2], 1.0])
    by_hand = 0.0
    for i in range(3):
        negs = [j for j in range(3) if j != i]
        mean = sum(raw[i][j] for j in negs) / 2
        denom = math.exp(5) + sum(raw[i][j] / mean * math.exp(s[i][j] / 0.2) for j in negs)
        by_hand += -math.log(math.exp(5) / denom)
    assert loss.item() == pytest.approx(by_hand / 3, rel=1e-6)  # symmetric s: both directions
    assert by_hand / 3 == pytest.approx(0.2784, abs=1e-4)  # rows: 0.1836, 0.3334, 0.3182


def test_dash_weights_factors_and_unknowns():
    age = torch.tensor([30.0, 50.0, NAN, 30.0])
    sex = torch.tensor([0, 1, 0, -1])
    site = torch.tensor([2, 2, 5, -1])
    w, same = dash_weights(age, sex, site, torch.tensor([0, 1, 2, 0]), eps=0.0)
    assert w[0, 1].item() == pytest.approx(math.exp(-1) * 0.8 * 1.3)
    assert w[0, 2].item() == pytest.approx(1.0 * 1.0 * 0.8)  # unknown age: neutral
    assert w[1, 3].item() == pytest.approx(math.exp(-1))  # unknown sex and site: neutral
    assert w[0, 3].item() == 0.0 and same[0, 3] and same[3, 0]  # same night -> eps (here 0)
    assert torch.equal(torch.diagonal(w), torch.ones(4)) and not same.diagonal().any()
    torch.testing.assert_close(w, w.T)


def test_symmetric_in_swapping_modalities():
    za, zb, *meta = random_batch(6)
    torch.testing.assert_close(dash_infonce(za, zb, *meta), dash_infonce(zb, za, *meta))


def test_finite_gradients_with_padding_and_empty_time_step():
    za, zb, valid, *meta = random_batch(7, N=5, T=6)
    valid[:, 2] = False  # a fully padded time step
    valid[0, 4] = False
    za = za.clone().requires_grad_()
    zb = zb.clone().requires_grad_()
    loss = dash_infonce(za, zb, valid, *meta)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(za.grad).all() and torch.isfinite(zb.grad).all()
    assert torch.all(za.grad[:, 2] == 0) and torch.all(za.grad[0, 4] == 0)
    assert za.grad[1, 4].abs().sum() > 0
    nothing = dash_infonce(za, zb, torch.zeros_like(valid), *meta)
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_padded_positions_do_not_change_the_loss():
    za, zb, valid, *meta = random_batch(8)
    noisy_a, noisy_b = za.clone(), zb.clone()
    noisy_a[~valid] = unit(torch.randn(int((~valid).sum()), za.shape[-1]))
    noisy_b[~valid] = -noisy_b[~valid]
    torch.testing.assert_close(
        dash_infonce(za, zb, valid, *meta), dash_infonce(noisy_a, noisy_b, valid, *meta)
    )


def test_similar_same_site_negative_weighs_more():
    # window 1 is a hard negative for window 0 (s = 0.96), window 2 an easy one (s = -1)
    theta = 0.28
    z = unit([[[1.0, 0.0]], [[math.cos(theta), math.sin(theta)]], [[-1.0, 0.0]]])
    valid = torch.ones(3, 1, dtype=torch.bool)
    sex, night = torch.tensor([0, 0, 0]), torch.arange(3)
    hard_is_similar = dash_infonce(z, z, valid, torch.tensor([50.0, 52.0, 80.0]), sex,
                                   torch.tensor([1, 1, 2]), night)  # fmt: skip
    hard_is_different = dash_infonce(z, z, valid, torch.tensor([50.0, 80.0, 52.0]), sex,
                                     torch.tensor([1, 2, 1]), night)  # fmt: skip
    plain = info_nce(z, z, valid)
    assert hard_is_similar > plain > hard_is_different
    assert (hard_is_similar - hard_is_different).item() > 0.1


def test_same_night_negatives_are_effectively_removed():
    # D = 4 lets s_01 change sign while every other similarity stays the same:
    # za_0 = (cos b, 0, 0, sin b), zb_0 = e0; za_1 = e1, zb_1 = (0, cos g, 0, sin g); za_2 = zb_2 = e2
    def batch(sign):
        b, g = sign * math.pi / 3, math.pi / 3
        za = torch.zeros(3, 1, 4)
        zb = torch.zeros(3, 1, 4)
        za[0, 0, [0, 3]] = torch.tensor([math.cos(b), math.sin(b)])
        zb[0, 0, 0] = 1.0
        za[1, 0, 1] = 1.0
        zb[1, 0, [1, 3]] = torch.tensor([math.cos(g), math.sin(g)])
        za[2, 0, 2] = zb[2, 0, 2] = 1.0
        return za, zb

    valid = torch.ones(3, 1, dtype=torch.bool)
    age, sex, site, _ = unknown_meta(3)
    (pa, pb), (na, nb) = batch(+1), batch(-1)
    assert (pa[0, 0] @ pb[1, 0]).item() == pytest.approx(0.75)
    assert (na[0, 0] @ nb[1, 0]).item() == pytest.approx(-0.75)
    same_night = torch.tensor([0, 0, 1])
    diff = dash_infonce(pa, pb, valid, age, sex, site, same_night) - dash_infonce(
        na, nb, valid, age, sex, site, same_night
    )
    assert abs(diff.item()) < 1e-5
    other_nights = torch.arange(3)
    diff_other = dash_infonce(pa, pb, valid, age, sex, site, other_nights) - dash_infonce(
        na, nb, valid, age, sex, site, other_nights
    )
    assert diff_other.item() > 0.1  # the same change matters when they are true negatives


def test_shape_errors_name_the_argument():
    za, zb, valid, age, sex, site, night = random_batch(0)
    with pytest.raises(ValueError, match="site must have shape"):
        dash_infonce(za, zb, valid, age, sex, site[:3], night)
    with pytest.raises(ValueError, match="must be"):
        dash_infonce(za, zb[:, :2], valid, age, sex, site, night)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    N=st.integers(1, 7),
    T=st.integers(1, 5),
    D=st.integers(2, 6),
    n_nights=st.integers(1, 7),
)
def test_property_nonnegative_bounded_and_permutation_invariant(seed, N, T, D, n_nights):
    """loss_i,t >= 0 always: the positive term sits in the denominator with weight 1.

    Upper bound: the normalised negative weights of a row sum to n_neg <= N - 1 and each
    exp((s_ij - s_ii) / tau) <= exp(2 / tau), so loss <= log(1 + (N - 1) exp(2 / tau)).
    """
    g = torch.Generator().manual_seed(seed)
    za = F.normalize(torch.randn(N, T, D, generator=g), dim=-1)
    zb = F.normalize(torch.randn(N, T, D, generator=g), dim=-1)
    valid = torch.rand(N, T, generator=g) > 0.3
    age = torch.where(torch.rand(N, generator=g) > 0.3, torch.rand(N, generator=g) * 70, NAN)
    sex = torch.randint(-1, 2, (N,), generator=g)
    site = torch.randint(-1, 3, (N,), generator=g)
    night = torch.randint(0, n_nights, (N,), generator=g)
    loss = dash_infonce(za, zb, valid, age, sex, site, night)
    assert torch.isfinite(loss)
    assert loss.item() >= 0.0
    assert loss.item() <= math.log(1 + max(N - 1, 0) * math.exp(2 / 0.2)) + 1e-4
    perm = torch.randperm(N, generator=g)
    permuted = dash_infonce(
        za[perm], zb[perm], valid[perm], age[perm], sex[perm], site[perm], night[perm]
    )
    torch.testing.assert_close(permuted, loss, rtol=1e-5, atol=1e-6)
