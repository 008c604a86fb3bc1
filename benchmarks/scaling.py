"""Wall time and peak memory of a whole recipe run as the dataset grows: 1x, 2x, 4x images.

    python -m benchmarks.scaling --recipe resnet18_mlp --scales 1 2 4

Each scale is a synthetic MURA with `scale` times the patients of the embedded one (so about
`scale` times the images), made once under `--root`. The recipe runs as a user runs it
(`python -m recipes.<recipe> --data-dir ...`, training, dev evaluation each epoch, test
evaluation, export) in a child process; its peak RSS comes from `os.wait4`. The run time should
grow linearly in the images: a fixed start-up cost plus a constant cost per image.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import add_record_flag, command_line, markdown_rows, write_record

DEFAULT_ARGS = "--weights none --image-size 128 --epochs 3 --patience 0 --no-freeze"
PATIENTS = 16  # train patients per part at 1x (the --synthetic set has 60)


def dataset(scale: int, root: Path, patients: int = PATIENTS) -> Path:
    """A synthetic MURA with `scale * patients` train patients per part under `root` (once).

    Images as in the `--synthetic` set (96-192 px); the test split grows alike (a third of
    the train patients, as there).
    """
    from mura_tf.data.synthetic import generate_synthetic
    from mura_tf.runs.settings import SYNTHETIC_DATA

    folder = root / f"scale_{scale}x{patients}"
    if not (folder / "MURA-v1.1").is_dir():
        generate_synthetic(
            folder,
            dataclasses.replace(
                SYNTHETIC_DATA,
                patients_per_part=scale * patients,
                valid_patients_per_part=max(1, scale * patients // 3),
            ),
        )
    return folder


def count_images(folder: Path) -> dict[str, int]:
    from mura_tf.data.mura import load_mura

    frame = load_mura(folder, check_images=False)
    return frame["split"].value_counts().to_dict()


def run_recipe(recipe: str, data_dir: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one recipe run in a child process."""
    command = [sys.executable, "-m", f"recipes.{recipe}", "--data-dir", str(data_dir)]
    command += ["--out", str(out), "--overwrite", *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(command)} failed (see its output above)")
    return seconds, usage.ru_maxrss / 1024


def linear_fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y against x; slope 0 for a single point."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling",
        description="Wall time and peak RSS of a whole recipe run on 1x, 2x, 4x synthetic data.",
    )
    p.add_argument("--recipe", default="resnet18_mlp", help="a recipes/ module (resnet18_mlp)")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="dataset sizes")
    p.add_argument(
        "--patients", type=int, default=PATIENTS, help=f"train patients per part at 1x ({PATIENTS})"
    )
    p.add_argument(
        "--args",
        default=DEFAULT_ARGS,
        help=f"recipe flags, one string (default: {DEFAULT_ARGS!r})",
    )
    p.add_argument("--root", default=None, help="where the synthetic sets go (default: temp)")
    add_record_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if any(s < 1 for s in args.scales) or args.patients < 2:
        parser().error("--scales must be positive and --patients at least 2")
    root = Path(args.root or Path(tempfile.gettempdir()) / "mura_tf_scaling")
    rows = []
    for scale in args.scales:
        print(f"scale {scale}x: making the data set (once) ...", file=sys.stderr, flush=True)
        folder = dataset(scale, root, args.patients)
        counts = count_images(folder)
        print(f"scale {scale}x: {counts}; running {args.recipe} ...", file=sys.stderr, flush=True)
        seconds, rss = run_recipe(args.recipe, folder, root / "runs", args.args.split())
        rows.append((scale, counts.get("train", 0), counts.get("valid", 0), seconds, rss))
    print(f"recipe {args.recipe} {args.args}")
    fixed, per_image = linear_fit([r[1] for r in rows], [r[3] for r in rows])
    lines = [
        "| scale | train images | test images | wall s | linear fit s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for scale, train, test, seconds, rss in rows:
        fit = fixed + per_image * train
        lines.append(f"| {scale}x | {train} | {test} | {seconds:.0f} | {fit:.0f} | {rss:.0f} |")
    print("\n".join(lines))
    print(f"\nleast squares: {fixed:.0f} s fixed + {1000 * per_image:.0f} ms per train image")
    if args.record:
        write_record(args.record, command_line("benchmarks.scaling", list(argv or sys.argv[1:])),
                     *markdown_rows("\n".join(lines)), fit={"fixed_s": fixed,
                                                            "per_image_s": per_image})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
