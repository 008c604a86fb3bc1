"""What MURA at its real size costs before the first GPU hour: wall time and peak RSS per phase.

    python -m benchmarks.full_size [--scales 1,10,60] [--root DIR] [--image-size 320]

A synthetic MURA-v1.1 tree shaped like the real one (7 parts, films 117-512 px a side, about
11.5 training films per valid film) at 1x, 10x and 60x: 60x has MURA's counts (about 36,800
training and 3,200 valid films), 1x a sixtieth of them. Each tree is made once under `--root`
(not timed). Then every phase a user meets runs in a process of its own, as the user starts it,
and its wall time and peak RSS (`os.wait4`) are taken:

- `catalogue + split`: reading the CSVs and checking every film (`load_catalogue`, as a recipe
  starts), then the patient-level train/dev split (`make_splits`);
- `explore`: `mura-tf explore` (counts, tables, sample sheet);
- `pipeline pass`: one pass over the training films through the training pipeline at
  `--image-size` (`make_dataset(..., training=True)`: decode, resize, report 000's
  augmentations, batches of 32), the catalogue read without checks;
- `evaluate`, `predict`: `mura-tf evaluate` and `mura-tf predict` on the valid split, with one
  model trained for two steps on the 1x tree at `--image-size` (`resnet18_mlp`, random weights:
  the cost of reading and scoring films does not depend on what the weights learned).

The table gives each phase's seconds and MB at each scale, and the growth from the smallest to
the largest scale against the growth in films: anything that grows faster than the films shows
as a ratio above 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import add_record_flag

# MURA v1.1: 36,808 training and 3,197 valid films over 7 parts. A patient of the synthetic
# set has about 3.8 training films per part; 23 train and 2 valid patients per part at 1x give
# about a sixtieth of MURA's counts.
TRAIN_PATIENTS, VALID_PATIENTS = 23, 2
MURA_SIDES = dict(min_side=117, max_side=512)
PHASES = ("catalogue + split", "explore", "pipeline pass", "evaluate", "predict")


def tree(
    scale: int,
    root: Path,
    train_patients: int = TRAIN_PATIENTS,
    valid_patients: int = VALID_PATIENTS,
) -> Path:
    """The synthetic MURA at `scale` under `root` (made once; `root/scale_Nx`, or with other
    patient counts than MURA's `root/scale_Nx_TxV`)."""
    from mura_tf.data.synthetic import SyntheticConfig, generate_synthetic

    shape = "" if (train_patients, valid_patients) == (TRAIN_PATIENTS, VALID_PATIENTS) else (
        f"_{train_patients}x{valid_patients}")  # fmt: skip
    folder = root / f"scale_{scale}x{shape}"
    if not (folder / "MURA-v1.1").is_dir():
        config = SyntheticConfig(
            patients_per_part=train_patients * scale,
            valid_patients_per_part=valid_patients * scale,
            **MURA_SIDES,
        )
        start = last = time.perf_counter()

        def progress(done: int, total: int) -> None:
            nonlocal last
            if done == total or time.perf_counter() - last > 60:
                last = time.perf_counter()
                print(f"  scale {scale}x: {done}/{total} studies", file=sys.stderr, flush=True)

        generate_synthetic(folder, config, progress=progress)
        seconds = time.perf_counter() - start
        print(f"  scale {scale}x made in {seconds:.0f} s", file=sys.stderr, flush=True)
    return folder


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `command` in a child process; stops on failure, with
    the end of what the child wrote to stderr."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"error: {' '.join(command)} failed:\n{errors.read()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def _catalogue_and_split(data_dir: str) -> None:
    from mura_tf.data.catalogue import load_catalogue
    from mura_tf.data.splits import make_splits

    frame = load_catalogue(data_dir)
    make_splits(frame[frame["split"] == "train"], dev_fraction=0.1, seed=0)


def _pipeline_pass(data_dir: str, image_size: int) -> None:
    from mura_tf.data.augment import AugmentConfig
    from mura_tf.data.catalogue import load_catalogue
    from mura_tf.data.pipeline import PipelineConfig, make_dataset

    frame = load_catalogue(data_dir, splits=("train",), check_images=False)
    config = PipelineConfig(image_size=image_size, augment=AugmentConfig())
    batches = make_dataset(frame, config, batch_size=32, training=True)
    images = sum(int(x.shape[0]) for x, _ in batches)
    if images != len(frame):
        raise SystemExit(f"the pass gave {images} films of {len(frame)}")


WORKERS = {"catalogue": _catalogue_and_split, "pipeline": _pipeline_pass}


def model(root: Path, data_dir: Path, image_size: int) -> Path:
    """A finished `resnet18_mlp` run at `image_size` (two training steps) under `root`."""
    out = root / f"model_{image_size}"
    found = sorted(out.rglob("export/saved_model.pb"))
    if found:
        return found[0].parents[1]
    command = [sys.executable, "-m", "recipes.resnet18_mlp", "--data-dir", str(data_dir),
               "--weights", "none", "--no-freeze", "--image-size", str(image_size),
               "--epochs", "1", "--max-steps", "2", "--out", str(out)]  # fmt: skip
    print("  training the model the evaluations use (two steps) ...", file=sys.stderr, flush=True)
    timed(command)
    return sorted(out.rglob("export/saved_model.pb"))[0].parents[1]


def phases(folder: Path, run: Path, image_size: int, scratch: Path) -> dict[str, tuple]:
    """Each phase's (seconds, MB) on the tree `folder`."""
    me = [sys.executable, "-m", "benchmarks.full_size"]
    cli = [sys.executable, "-m", "mura_tf"]
    # fmt: off
    commands = {
        "catalogue + split": [*me, "--phase", "catalogue", "--data-dir", str(folder)],
        "explore": [*cli, "explore", "--data-dir", str(folder), "--out", str(scratch / "ex")],
        "pipeline pass": [*me, "--phase", "pipeline", "--data-dir", str(folder),
                          "--image-size", str(image_size)],
        "evaluate": [*cli, "evaluate", "--model", str(run / "export"), "--data-dir",
                     str(folder), "--split", "valid", "--out", str(scratch / "ev")],
        "predict": [*cli, "predict", "--model", str(run), str(folder), "--split", "valid",
                    "--out", str(scratch / "pr"), "--overwrite"],
    }
    # fmt: on
    results = {}
    for name, command in commands.items():
        print(f"  {name} ...", file=sys.stderr, flush=True)
        results[name] = timed(command)
        print(f"  {name}: {results[name][0]:.1f} s, {results[name][1]:.0f} MB", file=sys.stderr)
    return results


def table(rows: list[tuple[int, int, int, dict]]) -> str:
    """Markdown: one row per phase, seconds and MB at each scale, then the marginal seconds per
    1,000 films between consecutive scales (training films for the first three phases, valid
    films for evaluate and predict): a cost linear in the films has equal marginals; one that
    grows faster shows a larger marginal at the larger scales."""
    pairs = list(zip(rows, rows[1:], strict=False))
    head = "| phase | " + " | ".join(f"{r[0]}x s | {r[0]}x MB" for r in rows)
    head += "".join(f" | s per 1,000 films, {a[0]}x→{b[0]}x" for a, b in pairs)
    lines = [head + " |", "|---|" + "---|---|" * len(rows) + "---|" * len(pairs)]
    for phase in PHASES:
        films = 2 if phase in ("evaluate", "predict") else 1  # column of the films it reads
        cells = " | ".join(f"{r[3][phase][0]:.1f} | {r[3][phase][1]:.0f}" for r in rows)
        for a, b in pairs:
            marginal = (b[3][phase][0] - a[3][phase][0]) / max(1, b[films] - a[films]) * 1000
            cells += f" | {marginal:.1f}"
        lines.append(f"| {phase} | {cells} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.full_size",
        description="Wall time and peak RSS of the catalogue, explore, the split, a training "
        "pipeline pass, evaluate and predict on synthetic MURA trees up to MURA's full size.",
    )
    p.add_argument(
        "--scales", default="1,10,60", help="comma list; 60 has MURA's counts (default 1,10,60)"
    )
    p.add_argument("--image-size", type=int, default=320, help="pipeline and model side (320)")
    p.add_argument("--root", default=None, help="where the trees go (default: a temp folder)")
    p.add_argument(
        "--train-patients",
        type=int,
        default=TRAIN_PATIENTS,
        help=f"training patients per part at 1x (default {TRAIN_PATIENTS}: MURA/60)",
    )
    p.add_argument(
        "--valid-patients",
        type=int,
        default=VALID_PATIENTS,
        help=f"valid patients per part at 1x (default {VALID_PATIENTS})",
    )
    add_record_flag(p)
    p.add_argument("--phase", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.phase == "catalogue":
        _catalogue_and_split(args.data_dir)
        return 0
    if args.phase == "pipeline":
        _pipeline_pass(args.data_dir, args.image_size)
        return 0
    try:
        scales = sorted({int(s) for s in args.scales.split(",") if s.strip()})
    except ValueError:
        parser().error(f"--scales must be a comma list of whole numbers, got {args.scales!r}")
    if not scales or scales[0] < 1 or args.image_size < 32:
        parser().error("--scales must be positive and --image-size at least 32")
    if args.train_patients < 2 or args.valid_patients < 1:
        parser().error("--train-patients must be at least 2 and --valid-patients at least 1")
    from benchmarks.records import command_line, cpu_model, markdown_rows, write_record
    from mura_tf.data.mura import load_mura

    root = Path(args.root or Path(tempfile.gettempdir()) / "mura_tf_full_size")
    print(f"making the trees under {root} (once) ...", file=sys.stderr, flush=True)
    folders = {s: tree(s, root, args.train_patients, args.valid_patients) for s in scales}
    run = model(root, folders[scales[0]], args.image_size)
    rows = []
    for scale in scales:
        counts = load_mura(folders[scale], check_images=False)["split"].value_counts()
        train, valid = int(counts.get("train", 0)), int(counts.get("valid", 0))
        print(f"scale {scale}x: {train} training, {valid} valid films", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=root) as scratch:
            rows.append((scale, train, valid, phases(folders[scale], run, args.image_size,
                                                       Path(scratch))))  # fmt: skip
    print(f"CPU: {cpu_model()}; image size {args.image_size}")
    print("| scale | training films | valid films |\n|---|---|---|")
    for scale, train, valid, _ in rows:
        print(f"| {scale}x | {train} | {valid} |")
    print()
    printed = table(rows)
    print(printed)
    if args.record:
        write_record(args.record, command_line("benchmarks.full_size", list(argv or sys.argv[1:])),
                     *markdown_rows(printed))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
