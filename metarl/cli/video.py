"""``metarl video RUN``: a video of one held-out trial of a trained run, the trial its evaluation scored."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.cli._args import check_writable, path_arg, seed_arg, whole
from metarl.errors import UsageError


def size_arg(text: str) -> tuple[int, int]:
    """``--size``: ``N`` (square) or ``WxH`` pixels, 16 to 1024 each."""
    parts = text.lower().split("x")
    try:
        w, h = (int(parts[0]),) * 2 if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or WxH: give e.g. --size 256 or --size 320x240") from None
    if len(parts) > 2 or not (16 <= w <= 1024 and 16 <= h <= 1024):
        raise argparse.ArgumentTypeError(f"{text!r}: give N or WxH with sides of 16 to 1024 pixels, e.g. --size 256")
    return w, h


def add_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("video", help="record a video of one held-out trial of a trained run (MP4 or GIF)")
    v.add_argument("run_dir", type=Path, help="a run directory written by `metarl train`")
    v.add_argument("--task", type=whole("--task", 0, minimum=0), default=0,
                   help="the task's position in the run's final evaluation (its per_goal order; default 0)")
    v.add_argument("--episodes", default="adapt,eval",
                   help="which episodes of the trial: adapt, eval (the first of each), adapt:K, eval:K "
                        "(comma-separated), or all (default adapt,eval: before and after adaptation)")
    v.add_argument("--out", type=path_arg, metavar="FILE",
                   help="an .mp4 or .gif path (default RUN_DIR/videos/trial-test-<task>.mp4; a GIF beside it "
                        "where ffmpeg is missing)")
    v.add_argument("--fps", type=whole("--fps", 30), help="frames per second (default: real time)")
    v.add_argument("--every", type=whole("--every", 2), default=1,
                   help="draw every K-th step (default 1; rendering MuJoCo without a GPU takes ~50 ms a frame)")
    v.add_argument("--size", type=size_arg, default=(256, 256), metavar="N|WxH", help="frame size (default 256)")
    v.add_argument("--camera", help="camera name (Meta-World: corner, corner2 (default), corner3, corner4, "
                                    "topview, behindGripper, gripperPOV)")
    v.add_argument("--side-by-side", action="store_true",
                   help="the chosen episodes next to each other instead of one after another")
    v.add_argument("--eval-seed", type=seed_arg("--eval-seed"),
                   help="the seed of a `metarl eval --eval-seed` evaluation (default: the run's)")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from metarl.offscreen import mujoco_gl_error, prefer_headless_gl

    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir} is not a directory: pass a run directory written by `metarl train`")
    if args.out is not None:
        if args.out.suffix.lower() not in (".mp4", ".gif"):
            raise UsageError(f"--out {args.out}: give a path ending in .mp4 or .gif")
        check_writable(args.out, "--out")
    prefer_headless_gl()  # before any family imports MuJoCo
    gl_error = mujoco_gl_error()  # told only if the video fails: a Driving run needs no MuJoCo
    from metarl.video import video_of_run

    try:
        done = video_of_run(args.run_dir, args.task, episodes=args.episodes, out=args.out, fps=args.fps,
                            camera=args.camera, size=args.size, every=args.every, side_by_side=args.side_by_side,
                            eval_seed=args.eval_seed, device=args.device)
    except OSError as e:
        raise UsageError(f"cannot write the video ({e.strerror or e}): choose a writable --out") from None
    except UsageError:
        if gl_error is not None:
            raise gl_error from None
        raise
    if done.path.suffix == ".gif" and (args.out is None or args.out.suffix.lower() == ".mp4"):
        print("ffmpeg not found (pip install 'metarl[video]' installs imageio-ffmpeg): wrote a GIF instead",
              file=sys.stderr)
    print(f"wrote {done.path} ({done.frames} frames at {done.fps:g} fps, held-out {done.trial.task.id})")
    print(f"check: {done.check}")
    return 0
