"""The fast Meta-World envs must reproduce upstream exactly (a sample here; all 50 in benchmarks/)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from metarl.envs.metaworld_fast import fast_class, parity_check, quat_from_matrix, tolerance

pytestmark = pytest.mark.metaworld


def test_quaternion_matches_scipy_bit_for_bit():
    mats = Rotation.random(2000, random_state=0).as_matrix()
    specials = [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    for m in [*mats, *specials]:
        np.testing.assert_array_equal(quat_from_matrix(m), Rotation.from_matrix(m).as_quat())
    skewed = np.diag([1.0, 1.0, 1.0 + 1e-9])  # scipy orthogonalises this one first: we defer to it
    np.testing.assert_array_equal(quat_from_matrix(skewed), Rotation.from_matrix(skewed).as_quat())
    with pytest.raises(ValueError):
        quat_from_matrix(np.diag([1.0, 1.0, -1.0]))


def test_tolerance_matches_upstream_bit_for_bit():
    from metaworld.utils.reward_utils import tolerance as upstream

    rng = np.random.default_rng(0)
    for _ in range(3000):
        lo = float(rng.uniform(-1, 1))
        bounds = (lo, lo + float(rng.choice([0.0, rng.uniform(0, 0.5)])))
        x = np.float64(rng.uniform(-2, 2)) if rng.random() < 0.5 else float(rng.uniform(-2, 2))
        margin = np.float64(rng.choice([0.0, rng.uniform(1e-3, 2)]))
        vam = float(rng.choice([0.1, 0.5, rng.uniform(0.01, 0.99)]))
        for sigmoid in ("long_tail", "gaussian"):
            ours, theirs = tolerance(x, bounds, margin, sigmoid, vam), upstream(x, bounds, margin, sigmoid, vam)
            assert ours == theirs and type(ours) is type(theirs)
    arr = np.linspace(-1, 1, 7)  # arrays go to upstream
    np.testing.assert_array_equal(tolerance(arr, (0, 0.1), 0.5, "long_tail"), upstream(arr, (0, 0.1), 0.5, "long_tail"))
    for bad in ({"bounds": (1.0, 0.0)}, {"margin": -1.0}):
        with pytest.raises(ValueError):
            tolerance(0.5, **{"bounds": (0.0, 0.1), "margin": 0.2, "sigmoid": "long_tail", **bad})


# grasping (contacts), multi-object quaternions, body quaternions, and a plain reach
@pytest.mark.parametrize("name", ["pick-place-v3", "assembly-v3", "door-open-v3", "reach-v3"])
def test_fast_env_equals_upstream_over_a_full_episode(name):
    diff = parity_check(name, episodes=1, seed=1)
    assert diff["steps"] == 500
    assert (diff["obs"], diff["reward"], diff["flags"]) == (0.0, 0.0, 0)


@pytest.mark.filterwarnings("ignore:Constant")
@pytest.mark.parametrize("name", ["pick-place-v3", "stick-pull-v3", "push-v3"])
def test_fast_env_equals_upstream_while_grasping(name):
    # upstream's scripted policy grips the object, so the contact-force path really runs (random
    # actions touch the object on 2 of the 50 tasks only: benchmarks/results/fast_env.json)
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP[name]()
    diff = parity_check(name, episodes=1, seed=0, policy=policy.get_action)
    assert diff["touching_steps"] > 50
    assert (diff["obs"], diff["reward"], diff["flags"]) == (0.0, 0.0, 0)


def test_fast_class_is_a_subclass_and_cached():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    cls = ALL_V3_ENVIRONMENTS["pick-place-v3"]
    assert issubclass(fast_class(cls), cls) and fast_class(cls) is fast_class(cls)


def test_a_fast_env_pickles_as_upstreams_does():
    import pickle

    from metarl.envs.metaworld import make_env

    steps = []
    for fast in (False, True):
        env = make_env("reach-v3", seed=0, fast=fast)
        env.reset()
        copy = pickle.loads(pickle.dumps(env))  # the fast class is found by name in a fresh lookup
        assert type(copy) is type(env)
        steps.append(copy.step(np.full(4, 0.3, np.float32))[0])
    np.testing.assert_array_equal(*steps)
