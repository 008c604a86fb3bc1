"""`mura-tf predict --model RUN FILM_OR_FOLDER ...`: a trained model on your own radiographs.

Images in one folder form one study (MURA's convention; `--per-image` turns that off), whose
probability is the mean of its views', decided at 0.5 (MURA's protocol) or at `--threshold`: a
number, or a threshold the run chose on its dev split (`dev`); `studies.csv` says which. A
MURA-layout folder (MURA-v1.1/ or its parent), a FracAtlas folder, a CSV manifest or a folder
of classes (one whose class folder is named abnormal, fractured, positive or `--positive`) is
a labelled set read through its catalogue, restricted by `--split` (default: the dataset's
test split) and `--part`. Prints one
row per study and writes `predictions.csv` (per film) and `studies.csv` (per study) to `--out`;
`--cam DIR` adds a Grad-CAM overlay per view and a contact sheet per study.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mura_tf.cli import Progress, add_threshold, command_parser, positive_int, run
from mura_tf.errors import ConfigError

SHOWN_STUDIES = 50


def _is_dataset_folder(path: Path, positive: str | None) -> bool:
    """A labelled set: MURA's or FracAtlas's layout, a manifest, or a folder of classes that
    names its positive class (a folder of study folders is studies, not classes)."""
    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.data.catalogue import is_own_films
    from mura_tf.data.fracatlas import is_fracatlas
    from mura_tf.data.manifest import POSITIVE_NAMES, is_manifest

    if is_manifest(path):
        return True
    mura = any((path / name).is_dir() for name in ("MURA-v1.1", "train", "valid"))
    if path.is_dir() and (mura or is_fracatlas(path)):
        return True
    names = {positive.lower()} if positive else set(POSITIVE_NAMES)
    return is_own_films(path) and any(c.name.lower() in names for c in path.iterdir())


def _dataset_films(
    folder: Path, split: str | None, part: str, strict: bool, positive: str | None
) -> pd.DataFrame:
    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.data.catalogue import detect_dataset, load_catalogue

    dataset = detect_dataset(folder, positive)
    split = split or dataset.test_split
    if split not in dataset.catalogue_splits:
        raise ConfigError(
            f"--split {split}: {dataset.title} has " + ", ".join(dataset.catalogue_splits)
        )
    frame = load_catalogue(
        folder, part, splits=(split,), dataset=dataset, positive=positive, strict=strict
    )
    return frame[["path", "study", "part", "label"]].astype({"label": float})


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("predict", "Abnormality probabilities for radiographs, per study.")
    parser.add_argument(
        "inputs", nargs="+", metavar="PATH",
        help="PNG, JPEG or DICOM films, folders of them (one study per folder), or a labelled "
        "set: a MURA or FracAtlas folder, a CSV manifest or a folder of classes",
    )  # fmt: skip
    parser.add_argument("--model", required=True, help="a finished run folder or its export/")
    parser.add_argument("--out", default="predictions", help="folder for the two CSV files")
    parser.add_argument(
        "--per-image", action="store_true", help="every film its own study, whatever its folder"
    )
    parser.add_argument(
        "--split", default=None, choices=["train", "valid", "test"],
        help="for a dataset folder: which split (default: its test split)",
    )  # fmt: skip
    parser.add_argument("--part", default="all", help="for a dataset folder: a part, list or all")
    parser.add_argument(
        "--positive", default=None,
        help="for a manifest or folder of classes: the label or class folder that is positive",
    )  # fmt: skip
    add_threshold(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--strict", action="store_true", help="stop at an unreadable file instead of skipping it"
    )
    parser.add_argument(
        "--cam", metavar="DIR",
        help="also draw Grad-CAM: an overlay per view (DIR/STUDY/VIEW.png) and a contact "
        "sheet per study (DIR/STUDY.png)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace earlier CSVs in --out")
    args = parser.parse_args(argv)

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.evaluators.thresholds import resolve_threshold
    from mura_tf.files import write_text
    from mura_tf.serving.load import load_cam_serving, load_image_serving, load_study_serving
    from mura_tf.serving.predict import find_inputs, predict_films, study_table

    out = Path(args.out)
    if (out / "studies.csv").exists() and not args.overwrite:
        raise ConfigError(f"{out} already holds predictions: pass --overwrite, or another --out")
    # First: a wrong --model fails before any film is read.
    predict = load_image_serving(args.model)
    predict_study = load_study_serving(args.model)  # a cascade routes whole studies
    cams = load_cam_serving(args.model) if args.cam else None
    threshold = resolve_threshold(args.threshold, args.model)

    datasets = [p for p in map(Path, args.inputs) if _is_dataset_folder(p, args.positive)]
    others = [p for p in args.inputs if Path(p) not in datasets]
    frames, unreadable = [], []
    for folder in datasets:
        frames.append(_dataset_films(folder, args.split, args.part, args.strict, args.positive))
    if others:
        found = find_inputs(others, per_image=args.per_image)
        frames.append(found.films)
        unreadable += found.unreadable
    if unreadable:
        path, reason = unreadable[0]
        if args.strict:
            raise ConfigError(f"cannot read {path}: {reason} (leave out --strict to skip it)")
        names = ", ".join(f"{p} ({r})" for p, r in unreadable[:3])
        more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        print(
            f"warning: skipped {len(unreadable)} unreadable file(s): {names}{more}", file=sys.stderr
        )
    films = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if films.empty:
        raise ConfigError("no readable PNG, JPEG or DICOM film in " + ", ".join(args.inputs))
    if args.per_image:
        films = films.assign(study=films["path"])

    predictions = predict_films(
        predict, films, args.batch_size, Progress("predicting"), predict_study
    )
    studies = study_table(predictions, threshold)
    shown = (
        studies.drop(columns=["label", "threshold", "threshold_rule"])
        .head(SHOWN_STUDIES)
        .assign(
            probability=lambda t: t["probability"].map("{:.3f}".format),
            abnormal=lambda t: t["abnormal"].map({True: "abnormal", False: "normal"}),
        )
    )
    print(shown.to_string(index=False))
    if len(studies) > SHOWN_STUDIES:
        print(f"... and {len(studies) - SHOWN_STUDIES} more studies in studies.csv")
    written = [
        write_text(out / "predictions.csv", predictions.to_csv(index=False, float_format="%.7g")),
        write_text(out / "studies.csv", studies.to_csv(index=False, float_format="%.7g")),
    ]
    print(
        f"\n{len(predictions)} films, {len(studies)} studies, "
        f"{int(studies['abnormal'].sum())} abnormal at {threshold.rule}; wrote "
        + ", ".join(map(str, written))
    )
    if cams is not None:
        # After parsing: --help and a wrong flag answer before TensorFlow loads.
        from mura_tf.data.catalogue import outlines_of_films
        from mura_tf.serving.predict import write_cams

        outlines = outlines_of_films(predictions["path"])
        sheets = write_cams(
            cams, predictions, args.cam, Progress("drawing Grad-CAM"), outlines=outlines,
            threshold=threshold,
        )  # fmt: skip
        print(
            f"Grad-CAM: {len(predictions)} overlays and {len(sheets)} contact sheets in {args.cam}"
            + (f", {len(outlines)} with the radiologists' outline" if outlines else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
