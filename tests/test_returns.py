import numpy as np
import pytest

from metarl.returns import RunningMeanStd, discounted_returns, gae, normalise_returns, normalise_rewards


def test_gae_matches_hand_computation_constant_value():
    # One slot, 3 steps, episode truncated at the end: bootstrap from V(final obs).
    r = np.array([[1.0], [2.0], [3.0]], np.float32)
    v = np.full((3, 1), 0.5, np.float32)
    nv = np.full((3, 1), 0.5, np.float32)
    term = np.zeros((3, 1), bool)
    ends = np.array([[False], [False], [True]])
    g, lam = 0.9, 0.8
    d = [1 + g * 0.5 - 0.5, 2 + g * 0.5 - 0.5, 3 + g * 0.5 - 0.5]
    a2 = d[2]
    a1 = d[1] + g * lam * a2
    a0 = d[0] + g * lam * a1
    adv, ret = gae(r, v, nv, term, ends, g, lam)
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], np.array([a0, a1, a2]) + 0.5, rtol=1e-6)


def test_termination_does_not_bootstrap_but_truncation_does():
    r = np.array([[1.0, 1.0]], np.float32)
    v = np.zeros((1, 2), np.float32)
    nv = np.full((1, 2), 10.0, np.float32)
    term = np.array([[True, False]])
    ends = np.array([[True, True]])  # slot 0 terminated, slot 1 truncated
    adv, _ = gae(r, v, nv, term, ends, 0.99, 0.95)
    assert adv[0, 0] == pytest.approx(1.0)
    assert adv[0, 1] == pytest.approx(1.0 + 0.99 * 10.0)


def test_gae_cuts_recursion_at_episode_end():
    r = np.array([[0.0], [5.0]], np.float32)
    z = np.zeros((2, 1), np.float32)
    ends = np.array([[True], [True]])
    adv, _ = gae(r, z, z, np.array([[True], [True]]), ends, 0.99, 1.0)
    assert adv[0, 0] == 0.0  # reward of the next episode must not leak back
    assert adv[1, 0] == 5.0


def test_discounted_returns_restart_after_end():
    r = np.array([[1.0], [1.0], [1.0]], np.float32)
    ends = np.array([[False], [True], [False]])
    np.testing.assert_allclose(discounted_returns(r, ends, 0.5)[:, 0], [1.5, 1.0, 1.0])


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000,))
    rms = RunningMeanStd()
    for chunk in np.split(x, 10):
        rms.update(chunk)
    assert rms.mean == pytest.approx(x.mean(), rel=1e-3)
    assert rms.var == pytest.approx(x.var(), rel=1e-2)


def test_normalise_returns_scales_values_from_the_old_std_to_the_new():
    rms = RunningMeanStd()
    first = np.array([1.0, 3.0, 5.0, 7.0])
    div, scale = normalise_returns(rms, first)
    assert div == pytest.approx(np.std(first), rel=1e-4)
    assert scale == pytest.approx(1 / div)  # the prior (std 1) had no units: the random head shrinks with the targets
    second = np.array([10.0, -10.0, 30.0, -30.0])
    div2, scale2 = normalise_returns(rms, second)
    both = np.concatenate([first, second])
    assert div2 == pytest.approx(np.std(both), rel=1e-4)
    assert scale2 == pytest.approx(div / div2)
    # all-zero returns (a sparse family before its first success) don't inflate the value head
    zeros = RunningMeanStd()
    product = np.prod([normalise_returns(zeros, np.zeros(2000))[1] for _ in range(50)])
    assert 1.0 <= product < 3.0, product


@pytest.mark.parametrize("rescale_value", [True, False])
def test_normalise_rewards_divides_by_the_return_std_cut_at_ends(rescale_value):
    rms = RunningMeanStd()
    rms.update(np.array([2.0, -2.0]))  # std 2 (count 2 + the prior's 1e-4)
    old = rms.std
    rewards = np.array([[1.0, 4.0], [2.0, 0.0], [3.0, 9.0]], np.float32)  # [T=3, N=2]
    ends = np.array([[False, True], [True, False], [False, True]])
    valid = np.array([[True, True], [True, True], [True, False]])  # slot 1's last step is padding
    scaled, scale, metrics = normalise_rewards(rms, rewards, ends, valid, 0.5, rescale_value)
    # by hand: slot 0 [1 + 0.5 * 2, 2, 3], slot 1 [4, 0 + 0.5 * 9, 9 (padding: left out)]
    returns = np.array([2.0, 4.0, 2.0, 4.5, 3.0])  # the valid steps, row-major
    expected = RunningMeanStd()
    expected.update(np.array([2.0, -2.0]))
    expected.update(returns)
    assert rms.std == pytest.approx(expected.std) and rms.count == pytest.approx(2 + 1e-4 + 5)
    np.testing.assert_array_equal(scaled, rewards / np.float32(rms.std))
    assert scaled.dtype == np.float32
    assert scale == (pytest.approx(old / rms.std) if rescale_value else 1.0)
    assert metrics == {"meta/return_std": rms.std, "meta/value_scale": scale}
