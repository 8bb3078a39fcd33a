"""Offscreen MuJoCo frames on machines without a display or a GPU.

MuJoCo picks its OpenGL backend once, when it is first imported, from ``MUJOCO_GL``; without it, on Linux,
GLFW, which needs a display. :func:`prefer_headless_gl` (called by ``metarl video`` before any env is
built) sets ``MUJOCO_GL`` to ``egl`` where Mesa's (or a GPU driver's) libEGL is installed, else to
``osmesa``; :class:`OffscreenRenderer` uses a headless backend even when MuJoCo was imported without one
(a script that built envs first), and where none works raises one :class:`~metarl.errors.UsageError`
naming the fix.

Renderers hold a GL context: each is closed by its env's ``close()`` and, failing that, before the
interpreter's exit handlers tear EGL down (a context freed after that prints EGL errors at exit).
"""

from __future__ import annotations

import atexit
import ctypes.util
import importlib
import os
import sys
import weakref
from typing import Any

import numpy as np

from metarl.errors import UsageError

HEADLESS = (("egl", "EGL"), ("osmesa", "OSMesa"))
"""Headless ``MUJOCO_GL`` backends in order of preference, with the library each loads."""
FIX = ("install Mesa's EGL (Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri) and set MUJOCO_GL=egl, "
       "or OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa, before Python imports mujoco")
"""What to do when no backend works (the tail of the error)."""

_LIVE: weakref.WeakSet[OffscreenRenderer] = weakref.WeakSet()
_exit_hook = False


def prefer_headless_gl() -> str | None:
    """Set ``MUJOCO_GL`` to the first headless backend whose library is installed, unless it is set already
    or MuJoCo is imported (then :class:`OffscreenRenderer` chooses). Returns the backend in effect (None:
    MuJoCo's own choice)."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen or "mujoco" in sys.modules:
        return chosen or None
    for backend, lib in HEADLESS:
        if ctypes.util.find_library(lib):
            os.environ["MUJOCO_GL"] = backend
            return backend
    return None


def mujoco_gl_error() -> UsageError | None:
    """Import MuJoCo now, where it isn't yet, and return the one-line error naming the fix if ``MUJOCO_GL``
    breaks its import (an unknown value, or a backend whose library is missing or broken: the families that
    import MuJoCo would otherwise fail with their own, misleading, error); None when it imports, isn't
    installed or ``MUJOCO_GL`` is unset."""
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen or sys.modules.get("mujoco") is not None:
        return None
    try:
        importlib.import_module("mujoco")
    except Exception as e:  # mujoco.gl_context imports the backend (and PyOpenGL) as MuJoCo is imported
        if isinstance(e, ModuleNotFoundError) and e.name == "mujoco":
            return None
        return UsageError(f"MuJoCo does not start with MUJOCO_GL={chosen} ({type(e).__name__}: {e}): {FIX}")
    return None


def _context_class() -> Any:
    """The GL context class to render with: MuJoCo's own if headless (or GLFW with a display), else the
    first headless one that imports."""
    from mujoco import gl_context

    own = getattr(gl_context, "GLContext", None)
    module = getattr(own, "__module__", "") or ""
    if module.startswith(("mujoco.egl", "mujoco.osmesa")):
        return own
    if own is not None and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return own
    tried = []
    for backend, lib in HEADLESS:
        if not ctypes.util.find_library(lib):
            tried.append(f"{backend}: no lib{lib}")
            continue
        try:
            return importlib.import_module(f"mujoco.{backend}").GLContext
        except Exception as e:  # a driver that loads but fails, or PyOpenGL fixed to another platform
            tried.append(f"{backend}: {type(e).__name__}: {e}")
    raise UsageError(f"no OpenGL backend for offscreen rendering ({'; '.join(tried)}): {FIX}")


def _close_live() -> None:
    for renderer in list(_LIVE):
        renderer.close()


class OffscreenRenderer:
    """RGB frames ``[height, width, 3]`` uint8 of one MuJoCo model, from a named camera or a free camera.

    Args:
        model: the ``mujoco.MjModel``; frames are drawn from the ``mujoco.MjData`` given to :meth:`render`
            (read only: rendering never changes the simulation).
        camera: a camera name of the model, or a ``mujoco.MjvCamera`` (free or tracking).
        rotate: turn frames by 180° (Meta-World's corner cameras look at the table upside down).
        shadows: shadows and reflections cost 2-3x the time per frame on a software (Mesa) renderer.
    """

    def __init__(self, model: Any, width: int, height: int, camera: Any = None, rotate: bool = False,
                 shadows: bool = False) -> None:
        import mujoco
        from mujoco import gl_context

        global _exit_hook
        limit = (model.vis.global_.offwidth, model.vis.global_.offheight)
        if width > limit[0] or height > limit[1]:
            raise UsageError(f"frame size {width}x{height} is larger than this model's offscreen buffer "
                             f"({limit[0]}x{limit[1]}): choose a smaller size")
        own = gl_context.GLContext
        gl_context.GLContext = _context_class()  # read by mujoco.Renderer's constructor only
        try:
            self._renderer = mujoco.Renderer(model, height, width)
        except UsageError:
            raise
        except Exception as e:
            raise UsageError(f"offscreen rendering failed ({type(e).__name__}: {e}): {FIX}") from None
        finally:
            gl_context.GLContext = own
        flags = self._renderer.scene.flags
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            flags[flag] = shadows
        self.model, self.camera, self.rotate = model, camera, rotate
        _LIVE.add(self)
        if not _exit_hook:  # registered after the first context: runs before EGL's own exit handler
            atexit.register(_close_live)
            _exit_hook = True

    def render(self, data: Any) -> np.ndarray:
        """The frame of ``data``'s current state."""
        if self._renderer is None:
            raise RuntimeError("OffscreenRenderer.render() after close()")
        self._renderer.update_scene(data, camera=-1 if self.camera is None else self.camera)
        frame = self._renderer.render()
        return np.ascontiguousarray(frame[::-1, ::-1]) if self.rotate else frame

    def close(self) -> None:
        """Free the GL context (idempotent)."""
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
        _LIVE.discard(self)


def tracking_camera(body: int, distance: float, elevation: float = -20.0, azimuth: float = 90.0) -> Any:
    """A camera that follows ``body`` of the model (locomotion: the robot runs out of a fixed view)."""
    import mujoco

    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid, cam.distance, cam.elevation, cam.azimuth = body, distance, elevation, azimuth
    return cam
