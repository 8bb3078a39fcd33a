"""Top-down frames of the families without a simulator's renderer (``render_mode="rgb_array"``, ``metarl
video``): a ``Driving`` car on its road, a ``PointNav`` point and its goal. Drawn with Pillow (matplotlib's
dependency) in about a millisecond per frame.

Driving: the road is rebuilt from the task's curvature ``κ(s) = amp · sin(2π s / wavelength + phase)``: heading
``θ(s) = ∫κ`` in closed form, the centre line by summing ``(cos θ, sin θ)`` over 0.5 m steps. The view
follows the car with the road's direction at the car pointing up; marks across the road every 10 m show
the speed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metarl.envs.driving import LANE_HALF_WIDTH, ROAD_HALF_WIDTH, SPEED_TOLERANCE

BEHIND, AHEAD, STEP = 12.0, 45.0, 0.5
"""Metres of road drawn behind and ahead of the car, and the step of the centre line."""
CAR_LENGTH, CAR_WIDTH = 4.5, 1.8
GRASS, ROAD, LINE, EDGE, CAR = (86, 140, 70), (90, 90, 96), (235, 235, 235), (40, 40, 40), (200, 30, 40)


def road_frame(s: float, amp: float, wavelength: float, phase: float, points: np.ndarray) -> np.ndarray:
    """The road's centre line at arc lengths ``s + points`` (``[P]`` metres), as ``[P, 2]`` (forward, left)
    metres in the frame of the road at ``s`` (origin on the centre line, forward along the road)."""
    k = 2 * math.pi / wavelength

    def heading(x: np.ndarray) -> np.ndarray:
        return (amp / k) * (math.cos(phase) - np.cos(k * x + phase))  # ∫0^x κ

    grid = s + np.arange(points.min(), points.max() + STEP, STEP)
    theta = heading(grid) - heading(np.array(s))
    xy = np.stack([np.cumsum(np.cos(theta)), np.cumsum(np.sin(theta))], axis=1) * STEP  # [G, 2]
    xy -= np.array([np.interp(s, grid, xy[:, 0]), np.interp(s, grid, xy[:, 1])])
    return np.stack([np.interp(s + points, grid, xy[:, i]) for i in (0, 1)], axis=1)


def _normals(center: np.ndarray) -> np.ndarray:
    """Unit left normals ``[P, 2]`` of a polyline ``[P, 2]``."""
    tangent = np.gradient(center, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def draw_frame(state: dict[str, float], params: Any, width: int, height: int) -> np.ndarray:
    """One frame ``[height, width, 3]`` uint8: road, car, and the speed against the hidden target.

    Args:
        state: the car's ``s, d`` (m), ``psi`` (rad), ``v`` (m/s), as ``DrivingEnv.state()`` gives them.
        params: the task's :class:`~metarl.envs.driving.DriveParams`.
    """
    scale = width / 36.0  # pixels per metre: 36 m across
    origin = np.array([width / 2, height * 0.72])

    def px(pts: np.ndarray) -> list[tuple[float, float]]:  # (forward, left) m -> pixels, forward up
        return [tuple(p) for p in origin + np.stack([-pts[:, 1], -pts[:, 0]], axis=1) * scale]

    offsets = np.arange(-BEHIND, AHEAD + STEP, STEP)
    center = road_frame(state["s"], params.curve_amp, params.curve_wavelength, params.curve_phase, offsets)
    normal = _normals(center)
    img = Image.new("RGB", (width, height), GRASS)
    draw = ImageDraw.Draw(img)
    draw.polygon(px(center + ROAD_HALF_WIDTH * normal) + px(center - ROAD_HALF_WIDTH * normal)[::-1], fill=ROAD)
    for side in (1, -1):
        draw.line(px(center + side * ROAD_HALF_WIDTH * normal), fill=EDGE, width=2)
        draw.line(px(center + side * LANE_HALF_WIDTH * normal), fill=LINE, width=1)
    for j in np.flatnonzero(np.diff(np.floor((state["s"] + offsets) / 10.0)) != 0):  # a mark every 10 m
        draw.line(px(np.stack([center[j] + LANE_HALF_WIDTH * normal[j], center[j] - LANE_HALF_WIDTH * normal[j]])),
                  fill=LINE, width=1)
    corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [CAR_LENGTH / 2, CAR_WIDTH / 2]
    c, s_ = math.cos(state["psi"]), math.sin(state["psi"])
    car = corners @ np.array([[c, s_], [-s_, c]]) + [0.0, state["d"]]
    draw.polygon(px(car), fill=CAR, outline=(20, 20, 20))
    _speed_bar(draw, state["v"], params.target_speed, width, height)
    return np.asarray(img)


def _speed_bar(draw: ImageDraw.ImageDraw, v: float, target: float, width: int, height: int) -> None:
    """A 0-30 m/s bar at the bottom: the speed, the hidden target and its success band."""
    x0, x1, y = 8, width - 8, height - 14

    def x(speed: float) -> float:
        return x0 + (x1 - x0) * min(max(speed, 0.0), 30.0) / 30.0

    draw.rectangle([x0, y, x1, y + 6], fill=(30, 30, 30))
    draw.rectangle([x(target - SPEED_TOLERANCE), y, x(target + SPEED_TOLERANCE), y + 6], fill=(60, 120, 60))
    draw.rectangle([x0, y + 2, x(v), y + 4], fill=(240, 200, 40))
    draw.line([x(target), y - 3, x(target), y + 9], fill=(255, 255, 255), width=2)
    draw.text((x0, y - 14), f"{v:4.1f} m/s (target {target:.1f})", fill=(255, 255, 255),
              font=ImageFont.load_default())


def draw_point(pos: np.ndarray, trail: list[np.ndarray], goal: np.ndarray, radius: float, extent: float,
               width: int, height: int) -> np.ndarray:
    """A ``PointNav`` frame: the square ``[-extent, extent]^2``, the goal with its success ``radius``, the
    path so far (``trail``) and the point at ``pos``."""
    img = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(img)

    def px(p: np.ndarray) -> tuple[float, float]:
        return (width / 2 + p[0] / extent * width / 2, height / 2 - p[1] / extent * height / 2)

    r = radius / extent * width / 2
    gx, gy = px(goal)
    draw.line([px(np.array([-extent, 0])), px(np.array([extent, 0]))], fill=(210, 210, 210))
    draw.line([px(np.array([0, -extent])), px(np.array([0, extent]))], fill=(210, 210, 210))
    draw.ellipse([gx - r, gy - r, gx + r, gy + r], fill=(190, 230, 190), outline=(60, 140, 60))
    if len(trail) > 1:
        draw.line([px(p) for p in trail], fill=(90, 120, 200), width=2)
    x, y = px(pos)
    draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(30, 60, 170))
    return np.asarray(img)
