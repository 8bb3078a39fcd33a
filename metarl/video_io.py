"""Captioned frames and video files for :mod:`metarl.video`: MP4 through imageio-ffmpeg (the ``video``
extra), GIF through Pillow (always there: matplotlib depends on it), and GIFs in TensorBoard.

Frame sizes are padded to multiples of 16, so H.264 encoders take them unscaled.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metarl.errors import UsageError

if TYPE_CHECKING:
    from metarl.video import Clip, Trial

GIF_MAX_FPS = 25
"""GIF frame delays are whole centiseconds and viewers slow delays under 2 cs down: GIFs keep every k-th
frame to play at most this many frames per second, still in real time."""
LINE = 13
"""Pixels per caption line."""


def _font(size: int = 11) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def caption(trial: Trial, clip: Clip, i: int) -> list[str]:
    """The two caption lines of frame ``i`` of ``clip``."""
    t, ret, success = clip.steps[i]
    total = trial.episodes[clip.phase == "evaluation"]
    done = "no" if success is None else f"yes (step {success})"
    return [f"{trial.task.id} · {clip.phase} episode {clip.episode + 1}/{total}",
            f"step {t} · return {ret:.1f} · success so far: {done}"]


def _band(width: int, lines: Sequence[str], shade: int) -> np.ndarray:
    """A dark band ``[len(lines) * LINE + 4, width, 3]`` with ``lines`` of white text."""
    img = Image.new("RGB", (width, len(lines) * LINE + 4), (shade, shade, shade))
    draw = ImageDraw.Draw(img)
    for j, text in enumerate(lines):
        draw.text((4, 2 + j * LINE), text, fill=(255, 255, 255), font=_font())
    return np.asarray(img)


def compose(trial: Trial, title: str = "", side_by_side: bool = False) -> list[np.ndarray]:
    """The video's frames: each clip's frames under its caption, the clips one after another (or side by
    side, a finished clip holding its last frame), under ``title``; padded to multiples of 16 pixels."""
    if not trial.clips or not all(c.frames for c in trial.clips):
        raise UsageError("the trial recorded no frames: choose episodes the trial has (--episodes)")
    captioned = [[np.concatenate([_band(f.shape[1], caption(trial, c, i), 30), f]) for i, f in enumerate(c.frames)]
                 for c in trial.clips]
    if side_by_side:
        length = max(map(len, captioned))
        rows = [np.concatenate([_fit(c[min(i, len(c) - 1)], captioned[0][0].shape[0]) for c in captioned], axis=1)
                for i in range(length)]
    else:
        height, width = max(f.shape[0] for c in captioned for f in c), max(f.shape[1] for c in captioned for f in c)
        rows = [_fit(f, height, width) for c in captioned for f in c]
    if title:
        band = _band(rows[0].shape[1], [title], 0)
        rows = [np.concatenate([band, r]) for r in rows]
    return [_fit(r, 16 * math.ceil(r.shape[0] / 16), 16 * math.ceil(r.shape[1] / 16)) for r in rows]


def _fit(frame: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """``frame`` padded with black to ``height`` x ``width`` (at least its own size)."""
    h, w = frame.shape[:2]
    width = w if width is None else width
    if (h, w) == (height, width):
        return frame
    out = np.zeros((max(h, height), max(w, width), 3), np.uint8)
    out[:h, :w] = frame
    return out


def ffmpeg_available() -> bool:
    """imageio and its ffmpeg binary (imageio-ffmpeg) are installed."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:  # not installed, or no binary for this platform
        return False


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write ``frames`` to ``path`` (``.mp4`` or ``.gif``); returns the path written: an MP4 asked for
    where ffmpeg is missing is written as a GIF beside it (``.gif``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise UsageError(f"--out {path}: give a path ending in .mp4 or .gif")
    if suffix == ".mp4" and ffmpeg_available():
        import imageio.v2 as imageio

        with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                                macro_block_size=16, ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
        return path
    path = path.with_suffix(".gif")
    path.write_bytes(gif_bytes(frames, fps))
    return path


def gif_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """An endlessly looping GIF of ``frames`` in real time at ``fps`` (every k-th frame where ``fps`` is
    over :data:`GIF_MAX_FPS`)."""
    k = max(1, math.ceil(fps / GIF_MAX_FPS))
    kept = list(frames[::k])
    if len(frames) and (len(frames) - 1) % k:
        kept.append(frames[-1])  # the episode's end
    images = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.MEDIANCUT) for f in kept]
    buf = io.BytesIO()
    delay = 10 * max(2, round(100 * k / fps))  # ms, whole centiseconds
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=delay, loop=0)
    return buf.getvalue()


def tensorboard_gif(logdir: str | Path, tag: str, frames: Sequence[np.ndarray], fps: float, step: int) -> None:
    """Add ``frames`` as an animated GIF image at ``step`` to the event files in ``logdir`` (TensorBoard's
    Images tab plays it; what ``SummaryWriter.add_video`` writes, without its moviepy dependency)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    h, w = frames[0].shape[:2]
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
    writer = SummaryWriter(str(logdir))
    try:
        writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    finally:
        writer.close()
