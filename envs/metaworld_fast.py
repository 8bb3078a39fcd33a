"""Faster Meta-World v3 envs with upstream's numbers, bit for bit.

Upstream's step is Python-bound: profiling pick-place-v3 (cProfile, 3,000 random steps,
2026-11-27) put 26% of step time in ``touching_object`` (two Python loops over every MuJoCo
contact), 18% in scipy's ``Rotation.from_matrix`` (one 3x3 matrix per step, through scipy's
array-API dispatch, a determinant and an ``isclose`` orthogonality check) and ~10% in observation
assembly (``np.split`` / ``np.hstack``); physics (``mj_step``) was 13%. After those three, the next
profile (fast pick-place-v3) showed ``reward_utils.tolerance`` (11%: ``np.where`` / ``logical_and`` on
0-d arrays for every scalar), name-based MuJoCo lookups (``data.body("hand")``, ``data.site(...)``)
and the layers of ``step`` (``set_xyz_action``, ``do_simulation``'s shape check).

:func:`fast_class` derives a subclass of an upstream env class that replaces exactly those pieces and
keeps everything else, reward formulas included, untouched:

- ``touching_object``: one pass over ``data.contact``'s geom pairs (no per-contact struct views);
  forces summed in contact order from 0, as upstream's ``sum`` does, so the result is identical;
  ``touching_main_object`` looks the main object's geom id up once.
- every upstream method that uses scipy's ``Rotation`` or ``reward_utils`` (``_get_quat_objects``,
  ``compute_reward``, ``_gripper_caging_reward``, ...): upstream's own function, re-bound to globals
  where ``Rotation`` is :class:`_Rotation` (scipy's matrix-to-quaternion method, Markley's,
  scalar-last, on Python floats; scipy itself for matrices it would orthogonalise first) and
  ``reward_utils.tolerance`` is :func:`tolerance` (scalar ``long_tail`` calls without ``np.where``).
- every upstream method that calls ``np.linalg.norm``: re-bound to a NumPy namespace whose norm takes
  a float64 vector's 2-norm as NumPy does (``sqrt(x.ravel().dot(x))``) without its dispatch layers
  (third profile: 77k calls, 6% of step time over ML10's classes).
- ``step``, ``_get_obs``, ``_get_curr_obs_combined_no_goal``: the same operations in the same order,
  inlined, with body/site ids looked up once (``get_endeff_pos``, ``tcp_center``, ``get_body_com``,
  ``_get_site_pos``, ``_set_pos_site``) and the observation written straight into one array.

``tests/test_metaworld_fast.py`` checks a sample of tasks and ``benchmarks/fast_env.py`` all 50: same
actions -> identical observations, rewards, success, terminated and truncated over full 500-step
episodes and resets.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from typing import Any

import mujoco
import numpy as np
from metaworld.utils import reward_utils as _reward_utils
from scipy.spatial.transform import Rotation as _ScipyRotation

_upstream_tolerance = _reward_utils.tolerance


class _Rotation:
    """Drop-in for the one scipy use in Meta-World: ``Rotation.from_matrix(m).as_quat()``."""

    __slots__ = ("_m",)

    def __init__(self, m: Any) -> None:
        self._m = m

    @classmethod
    def from_matrix(cls, matrix: Any) -> _Rotation:
        return cls(matrix)

    def as_quat(self) -> np.ndarray:
        return quat_from_matrix(self._m)


def quat_from_matrix(matrix: Any) -> np.ndarray:
    """Scalar-last unit quaternion ``[4]`` of a 3x3 rotation matrix, equal to scipy's to the bit.

    Markley, "Unit quaternion from rotation matrix", J. Guidance 31(2), 2008, as scipy implements
    it: pick the largest of the diagonal and the trace, build the quaternion from it, normalise.
    """
    m = np.asarray(matrix, dtype=np.float64)
    a, b, c, d, e, f, g, h, i = m.reshape(9).tolist()
    if not _is_proper_orthogonal(a, b, c, d, e, f, g, h, i):
        return _ScipyRotation.from_matrix(m).as_quat()  # scipy orthogonalises or raises
    tr = a + e + i
    k = max(range(4), key=(a, e, i, tr).__getitem__)  # first maximum, like argmax
    if k == 0:
        q = (1 - tr + 2 * a, d + b, g + c, h - f)
    elif k == 1:
        q = (d + b, 1 - tr + 2 * e, h + f, c - g)
    elif k == 2:
        q = (g + c, h + f, 1 - tr + 2 * i, d - b)
    else:
        q = (h - f, c - g, d - b, 1 + tr)
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return np.array([q[0] / n, q[1] / n, q[2] / n, q[3] / n])


def _is_proper_orthogonal(a, b, c, d, e, f, g, h, i) -> bool:
    """det > 0 and M Mᵀ within 1e-12 of I: the matrices scipy converts without orthogonalising."""
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if det <= 0:
        return False
    tol = 1e-13  # stricter than scipy's isclose(atol=1e-12): never a false "orthogonal"
    return (abs(a * a + b * b + c * c - 1.0) <= tol and abs(d * d + e * e + f * f - 1.0) <= tol
            and abs(g * g + h * h + i * i - 1.0) <= tol and abs(a * d + b * e + c * f) <= tol
            and abs(a * g + b * h + c * i) <= tol and abs(d * g + e * h + f * i) <= tol)


def _touching_object(self, object_geom_id: int) -> bool:
    """Both finger pads press on the object (positive summed contact force), as upstream defines it.

    A Python loop over the contacts' geom pairs: there are a handful, and NumPy masks over them cost
    more (17.5 vs 3.1 us on pick-place-v3 with one contact). Forces are summed in contact order from
    0, as upstream's ``sum`` does, so the result is identical.
    """
    contact = self.data.contact
    pairs = contact.geom.tolist()
    if not pairs:
        return False
    left_id, right_id = self._metarl_pad_ids
    force = self.data.efc_force
    left = right = 0
    for (g1, g2), address in zip(pairs, contact.efc_address.tolist(), strict=True):
        if g1 == object_geom_id or g2 == object_geom_id:
            if g1 == left_id or g2 == left_id:
                left += force[address]
            if g1 == right_id or g2 == right_id:
                right += force[address]
    return left > 0 and right > 0


def _touching_main_object(self) -> bool:
    """``touching_object`` of the main object, its id looked up once (upstream: by name at every step)."""
    try:
        geom_id = self._metarl_main_id
    except AttributeError:  # not looked up yet; a lookup that raises (a removed MuJoCo API) raises every time
        geom_id = self._metarl_main_id = self._get_id_main_object()
    return self.touching_object(geom_id)


def _get_curr_obs_combined_no_goal(self) -> np.ndarray:
    """[18]: hand xyz, gripper opening in [0, 1], then (xyz, quat) per object, zero-padded."""
    out = np.zeros(18)
    xpos = self.data.xpos
    out[:3] = self.get_endeff_pos()
    right, left = _body_id(self, "rightclaw"), _body_id(self, "leftclaw")
    opening = float(_norm(xpos[right] - xpos[left])) / 0.1
    out[3] = 0.0 if opening < 0.0 else 1.0 if opening > 1.0 else opening  # np.clip's value, NaN included
    pos, quat = self._get_pos_objects(), self._get_quat_objects()
    for k in range(len(pos) // 3):
        out[4 + 7 * k:7 + 7 * k] = pos[3 * k:3 * k + 3]
        out[7 + 7 * k:11 + 7 * k] = quat[4 * k:4 * k + 4]
    return out


def _get_obs(self) -> np.ndarray:
    """Frame-stacked observation ``[current (18), previous (18), goal (3)]``, as upstream stacks it."""
    pos_goal = self._get_pos_goal()
    curr = self._get_curr_obs_combined_no_goal()
    n = curr.shape[0]
    obs = np.empty(2 * n + pos_goal.shape[0])
    obs[:n] = curr
    obs[n:2 * n] = self._prev_obs
    obs[2 * n:] = 0.0 if self._partially_observable else pos_goal
    self._prev_obs = curr
    return obs


_MOCAP_QUAT = np.array([1, 0, 1, 0])


def _step(self, action):
    """Upstream's ``SawyerXYZEnv.step`` with the same operations in the same order, minus the layers:
    ``set_xyz_action`` and ``do_simulation`` inlined, site ids cached, the observation clipped in place."""
    if not self._set_task_called:
        raise RuntimeError("You must call env.set_task before using env.step")
    assert len(action) == 4, f"Actions should be size 4, got {len(action)}"
    data, model = self.data, self.model
    new_mocap_pos = data.mocap_pos + (np.asarray(action[:3]).clip(-1, 1) * self.action_scale)[None]
    new_mocap_pos[0, :] = new_mocap_pos[0, :].clip(self.mocap_low, self.mocap_high)
    data.mocap_pos = new_mocap_pos
    data.mocap_quat = _MOCAP_QUAT
    if self.curr_path_length >= self.max_path_length:
        raise ValueError("You must reset the env manually once truncate==True")
    data.ctrl[:] = (action[-1], -action[-1])
    mujoco.mj_step(model, data, nstep=self.frame_skip)
    mujoco.mj_rnePostConstraint(model, data)
    self.curr_path_length += 1
    for name, pos in self._target_site_config:
        data.site_xpos[_site_id(self, name)] = pos[:3]
    if self._did_see_sim_exception:
        return self._metarl_super_step_unstable()
    mujoco.mj_forward(model, data)
    space = self.sawyer_observation_space
    obs = self._get_obs()  # a fresh float64 array: clipped in place
    obs.clip(space.low, space.high, out=obs)
    self._last_stable_obs = obs
    reward, info = self.evaluate_state(obs, action)
    return np.array(obs, dtype=np.float64), reward, False, self.curr_path_length == self.max_path_length, info


def _site_id(self, name: str) -> int:
    ids = self._metarl_site_ids
    if name not in ids:
        ids[name] = self.data.site(name).id
    return ids[name]


def _body_id(self, name: str) -> int:
    ids = self._metarl_body_ids
    if name not in ids:
        ids[name] = self.data.body(name).id
    return ids[name]


def _get_site_pos(self, site_name: str) -> np.ndarray:
    return self.data.site_xpos[_site_id(self, site_name)].copy()


def _set_pos_site(self, name: str, pos: np.ndarray) -> None:
    assert isinstance(pos, np.ndarray)
    assert pos.ndim == 1
    self.data.site_xpos[_site_id(self, name)] = pos[:3]


def _get_body_com(self, body_name: str) -> np.ndarray:
    return self.data.xpos[_body_id(self, body_name)]


def _get_endeff_pos(self) -> np.ndarray:
    return self.data.xpos[_body_id(self, "hand")]


def _tcp_center(self) -> np.ndarray:
    right, left = _site_id(self, "rightEndEffector"), _site_id(self, "leftEndEffector")
    return (self.data.site_xpos[right] + self.data.site_xpos[left]) / 2.0


def tolerance(x: Any, bounds: tuple[float, float] = (0.0, 0.0), margin: Any = 0.0, sigmoid: str = "gaussian",
              value_at_margin: float = 0.1) -> Any:
    """``metaworld.utils.reward_utils.tolerance``, to the bit, without NumPy for scalar ``long_tail`` calls.

    Upstream evaluates both branches and the sigmoid with ``np.where`` on 0-d arrays; here only the
    taken branch is computed, with the same NumPy operations on the same values. Arrays and other
    sigmoids go to upstream's function.
    """
    lower, upper = bounds
    if not (sigmoid == "long_tail" and type(x) in _F64 and type(margin) in _F64 and type(lower) in _F64
            and type(upper) in _F64):  # float32 operands would change the arithmetic: upstream's path
        return _upstream_tolerance(x, bounds, margin, sigmoid, value_at_margin)
    if lower > upper:
        raise ValueError("Lower bound must be <= upper bound.")
    if margin < 0:
        raise ValueError(f"`margin` must be non-negative. Current value: {margin}")
    if margin != 0 and not 0 < value_at_margin < 1:  # upstream validates whenever the sigmoid is evaluated
        raise ValueError(f"`value_at_1` must be strictly between 0 and 1, got {value_at_margin}.")
    if lower <= x <= upper:
        return 1.0
    if margin == 0:
        return 0.0
    # The square stays a NumPy power on a 0-d array, as upstream's: NumPy's vectorised pow may round
    # differently from x * x (measured: 1 ulp on stick-pull-v3).
    d = np.asarray((lower - x if x < lower else x - upper) / margin)
    scale = _LONG_TAIL_SCALE.get(value_at_margin)
    if scale is None:
        scale = _LONG_TAIL_SCALE[value_at_margin] = np.sqrt(1 / value_at_margin - 1)
    return (1 / ((d * scale) ** 2 + 1)).item()


_LONG_TAIL_SCALE: dict[float, np.float64] = {}  # value_at_margin -> np.sqrt(1 / value_at_margin - 1)


_F64 = (float, int, np.float64)


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """``np.linalg.norm``, to the bit, without its dispatch layers for a float64 vector's 2-norm.

    NumPy computes that case as ``sqrt(x.ravel(order="K").dot(x))``; so does this (IEEE square roots
    are correctly rounded, so ``math.sqrt`` and ``np.sqrt`` agree). Everything else goes to NumPy.
    """
    if (type(x) is np.ndarray and x.dtype.type is np.float64 and axis is None and not keepdims
            and (ord is None or (ord == 2 and x.ndim == 1))):
        x = x.ravel(order="K")
        return np.float64(math.sqrt(x.dot(x)))
    return _np_norm(x, ord, axis, keepdims)


_np_norm = np.linalg.norm
_FAST_NUMPY = types.ModuleType("numpy")  # numpy's namespace (lazy attributes included) with the fast norm
_FAST_NUMPY.__dict__.update(vars(np))
_FAST_NUMPY.linalg = types.ModuleType("numpy.linalg")
_FAST_NUMPY.linalg.__dict__.update(vars(np.linalg))
_FAST_NUMPY.linalg.norm = _norm

_FAST_REWARD_UTILS = types.SimpleNamespace(**{k: getattr(_reward_utils, k) for k in dir(_reward_utils)
                                              if not k.startswith("__")})
_FAST_REWARD_UTILS.tolerance = tolerance


def _rebind(func: types.FunctionType, **names: Any) -> types.FunctionType:
    """A copy of ``func`` whose global names ``names`` resolve to the given objects."""
    new = types.FunctionType(func.__code__, {**func.__globals__, **names}, func.__name__, func.__defaults__,
                             func.__closure__)
    new.__kwdefaults__, new.__qualname__ = func.__kwdefaults__, func.__qualname__
    return new


@functools.cache
def fast_class(cls: type) -> type:
    """The fast subclass of upstream Meta-World env class ``cls`` (cached per class)."""
    ns: dict[str, Any] = {}
    # Every upstream method that reaches the reward helpers or scipy's Rotation, re-bound to the fast ones.
    fast_globals = {"reward_utils": _FAST_REWARD_UTILS, "tolerance": tolerance, "Rotation": _Rotation}
    for name in dir(cls):
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, types.FunctionType) and attr.__module__.startswith("metaworld"):
            code = attr.__code__
            used = {k: v for k, v in fast_globals.items() if k in code.co_names and k in attr.__globals__}
            if "linalg" in code.co_names and attr.__globals__.get("np") is np:  # np.linalg.norm(...)
                used["np"] = _FAST_NUMPY
            if used:
                ns[name] = _rebind(attr, **used)
    ns.update({
        "touching_object": _touching_object,
        "touching_main_object": property(_touching_main_object),
        "_get_curr_obs_combined_no_goal": _get_curr_obs_combined_no_goal,
        "_get_obs": _get_obs,
        "step": _step,
        "_get_site_pos": _get_site_pos,
        "_set_pos_site": _set_pos_site,
        "get_body_com": _get_body_com,
        "get_endeff_pos": _get_endeff_pos,
        "tcp_center": property(_tcp_center),
        "__module__": __name__,
    })

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._metarl_site_ids: dict[str, int] = {}
        self._metarl_body_ids: dict[str, int] = {}
        cls.__init__(self, *args, **kwargs)
        data = self.data
        self._metarl_pad_ids = (data.geom("leftpad_geom").id, data.geom("rightpad_geom").id)

    def _metarl_super_step_unstable(self):  # upstream's answer after a simulation exception
        return (self._last_stable_obs, 0.0, False, False,
                {"success": False, "near_object": 0.0, "grasp_success": False, "grasp_reward": 0.0,
                 "in_place_reward": 0.0, "obj_to_target": 0.0, "unscaled_reward": 0.0})

    ns["_metarl_super_step_unstable"] = _metarl_super_step_unstable

    ns["__init__"] = __init__
    return type(f"Fast{cls.__name__}", (cls,), ns)


def __getattr__(name: str) -> type:
    """``FastX`` for an upstream v3 env class ``X``, built on first use: what unpickling a fast env looks up
    (the classes are made by :func:`fast_class`, not defined in this module)."""
    if name.startswith("Fast"):
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        for cls in ALL_V3_ENVIRONMENTS.values():
            if cls.__name__ == name[4:]:
                return fast_class(cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parity_check(env_name: str, episodes: int = 2, seed: int = 0, policy: Any = None) -> dict[str, float]:
    """Run upstream and fast envs side by side with the same task and actions; report differences.

    Actions are uniform random, or ``policy(obs) -> action`` applied to upstream's observation.
    Returns ``{"obs": max |Δobs|, "reward": max |Δreward|, "flags": mismatching success /
    terminated / truncated / touching steps, "steps": steps compared, "touching_steps": steps where
    upstream's gripper touched the main object}``; zero differences mean identical.
    """
    from metarl.envs.metaworld import make_env

    envs = [make_env(env_name, fast=fast, seed=seed) for fast in (False, True)]
    rng = np.random.default_rng(seed)
    diff = {"obs": 0.0, "reward": 0.0, "flags": 0, "steps": 0, "touching_steps": 0}
    touching = _has_main_object(envs[0])
    for _ in range(episodes):
        (o0, _), (o1, _) = (env.reset() for env in envs)
        diff["obs"] = max(diff["obs"], float(np.max(np.abs(o0 - o1))))
        truncated = False
        while not truncated:
            action = rng.uniform(-1, 1, 4).astype(np.float32) if policy is None else policy(o0)
            a, b = (env.step(action) for env in envs)
            o0 = a[0]
            diff["obs"] = max(diff["obs"], float(np.max(np.abs(a[0] - b[0]))))
            diff["reward"] = max(diff["reward"], abs(float(a[1]) - float(b[1])))
            flags = [(r[2], r[3], r[4]["success"], touching and env.touching_main_object)
                     for r, env in zip((a, b), envs, strict=True)]
            diff["flags"] += int(flags[0] != flags[1])
            diff["touching_steps"] += int(bool(flags[0][3]))
            diff["steps"] += 1
            truncated = a[3] or b[3]
    for env in envs:
        env.close()
    return diff


def _has_main_object(env: Any) -> bool:
    try:
        env.touching_main_object  # noqa: B018 (some envs have no "objGeom")
    except (KeyError, ValueError, AttributeError):  # assembly-v3 calls a removed MuJoCo API
        return False
    return True
