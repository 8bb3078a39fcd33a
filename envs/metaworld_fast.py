"""Faster Meta-World v3 envs with upstream's numbers, bit for bit.

Upstream's step is Python-bound: profiling pick-place-v3 (cProfile, 3,000 random steps,
2026-11-27) put 26% of step time in ``touching_object`` (two Python loops over every MuJoCo
contact), 18% in scipy's ``Rotation.from_matrix`` (one 3x3 matrix per step, through scipy's
array-API dispatch, a determinant and an ``isclose`` orthogonality check) and ~10% in observation
assembly (``np.split`` / ``np.hstack``); physics (``mj_step``) was 13%.

:func:`fast_class` derives a subclass of an upstream env class that replaces exactly those three
pieces and keeps everything else, rewards included, untouched:

- ``touching_object``: NumPy masks over ``data.contact``; forces summed with Python's ``sum`` in
  contact order, as upstream does, so the result is identical.
- ``_get_quat_objects``: upstream's own function, re-bound to a namespace where ``Rotation`` is
  :class:`_Rotation`, which implements scipy's matrix-to-quaternion method (Markley's, scalar-last)
  on Python floats, falling back to scipy for matrices scipy would orthogonalise first.
- ``_get_curr_obs_combined_no_goal``: the same values written straight into one array.

``tests/test_metaworld_fast.py`` checks a sample of tasks and ``benchmarks/fast_env_parity.py``
all 50: same actions -> identical observations, rewards, success, terminated and truncated over
full 500-step episodes and resets.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation as _ScipyRotation


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
    """Both finger pads press on the object (positive summed contact force), as upstream defines it."""
    contact = self.data.contact
    g1, g2 = contact.geom1, contact.geom2
    on_obj = (g1 == object_geom_id) | (g2 == object_geom_id)
    left_id, right_id = self._metarl_pad_ids
    force = self.data.efc_force
    left = sum(force[contact.efc_address[on_obj & ((g1 == left_id) | (g2 == left_id))]].tolist())
    right = sum(force[contact.efc_address[on_obj & ((g1 == right_id) | (g2 == right_id))]].tolist())
    return left > 0 and right > 0


def _get_curr_obs_combined_no_goal(self) -> np.ndarray:
    """[18]: hand xyz, gripper opening in [0, 1], then (xyz, quat) per object, zero-padded."""
    out = np.zeros(18)
    out[:3] = self.get_endeff_pos()
    right, left = self.data.body("rightclaw"), self.data.body("leftclaw")
    out[3] = np.clip(np.linalg.norm(right.xpos - left.xpos) / 0.1, 0.0, 1.0)
    pos, quat = self._get_pos_objects(), self._get_quat_objects()
    for k in range(len(pos) // 3):
        out[4 + 7 * k:7 + 7 * k] = pos[3 * k:3 * k + 3]
        out[7 + 7 * k:11 + 7 * k] = quat[4 * k:4 * k + 4]
    return out


def _rebind(func: types.FunctionType, **names: Any) -> types.FunctionType:
    """A copy of ``func`` whose global names ``names`` resolve to the given objects."""
    new = types.FunctionType(func.__code__, {**func.__globals__, **names}, func.__name__, func.__defaults__,
                             func.__closure__)
    new.__kwdefaults__, new.__qualname__ = func.__kwdefaults__, func.__qualname__
    return new


@functools.cache
def fast_class(cls: type) -> type:
    """The fast subclass of upstream Meta-World env class ``cls`` (cached per class)."""
    quat = cls._get_quat_objects
    ns: dict[str, Any] = {
        "touching_object": _touching_object,
        "_get_curr_obs_combined_no_goal": _get_curr_obs_combined_no_goal,
        "_get_quat_objects": _rebind(quat, Rotation=_Rotation) if "Rotation" in quat.__code__.co_names else quat,
        "__module__": __name__,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls.__init__(self, *args, **kwargs)
        self._metarl_pad_ids = (self.data.geom("leftpad_geom").id, self.data.geom("rightpad_geom").id)

    ns["__init__"] = __init__
    return type(f"Fast{cls.__name__}", (cls,), ns)


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
