"""`mura-tf evaluate --model RUN/export --data-dir DIR`: evaluate an exported SavedModel on MURA
or FracAtlas (the layout of DIR says which).

Only TensorFlow is needed to load the model: `tf.saved_model.load` and its `serve` endpoint
(raw float32 pixels in, abnormality probability out). Writes `metrics.json`,
`predictions.csv` (per film), `studies.csv` (per study, with its decision and the threshold
that made it), `roc.png` and `confusion.png` (study level, all parts and per part). Studies are
decided at 0.5 (MURA's protocol) unless `--threshold` gives a number or names a threshold the
run chose on its dev split; `metrics.json` records which.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mura_tf.cli import (
    add_mura_folder,
    add_threshold,
    command_parser,
    mura_folder,
    positive_int,
    run,
)
from mura_tf.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "evaluate",
        "Evaluate an exported SavedModel on MURA or FracAtlas at image and study level.",
    )
    parser.add_argument("--model", required=True, help="a run's export/ folder (SavedModel)")
    add_mura_folder(parser)
    parser.add_argument("--part", default="all", help="a part, a comma list, or all")
    parser.add_argument(
        "--split",
        default=None,
        choices=["train", "valid", "test"],
        help="split to evaluate on (default: the test set: MURA's valid, FracAtlas's test)",
    )
    add_threshold(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--out", help="output folder (default: next to the model, evaluation-SPLIT)"
    )
    args = parser.parse_args(argv)
    args.data_dir = mura_folder(args)

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.data.catalogue import detect_dataset, load_catalogue
    from mura_tf.data.dicom import dicom_paths
    from mura_tf.evaluators.intervals import metric_intervals, with_intervals
    from mura_tf.evaluators.metrics import (
        interval_table,
        metrics_table,
        study_level_metrics,
        study_predictions,
    )
    from mura_tf.evaluators.plots import plot_confusion, plot_roc
    from mura_tf.evaluators.thresholds import resolve_threshold
    from mura_tf.files import write_json, write_text
    from mura_tf.serving.load import (
        load_image_serving,
        load_serving,
        load_study_serving,
        predict_frame,
    )
    from mura_tf.serving.predict import predict_films, study_table

    serve, image_size = load_serving(args.model)
    predict_study = load_study_serving(args.model)
    threshold = resolve_threshold(args.threshold, args.model)
    dataset = detect_dataset(args.data_dir, args.positive)
    args.split = args.split or dataset.test_split
    if args.split not in dataset.catalogue_splits:
        raise ConfigError(
            f"--split {args.split}: {dataset.title} has " + ", ".join(dataset.catalogue_splits)
        )
    frame = load_catalogue(
        args.data_dir, args.part, splits=(args.split,), dataset=dataset, positive=args.positive
    )
    if predict_study is not None:  # a part-router cascade routes each study by its views' vote
        predictions = predict_films(None, frame, predict_study=predict_study)
    elif dicom_paths(frame["path"]):  # DICOM: read as displayed
        films = predict_films(load_image_serving(args.model), frame, args.batch_size)
        predictions = films[["path", "part", "patient", "study", "label", "probability"]]
    else:
        predictions = predict_frame(serve, image_size, frame, args.batch_size)
    metrics = study_level_metrics(predictions, threshold.value)
    metrics = with_intervals(metrics, metric_intervals(predictions, threshold=threshold.value))
    metrics["threshold"] = {"value": threshold.value, "rule": threshold.rule}
    print(f"studies decided at {threshold.rule}")
    print(metrics_table(metrics).to_string())
    print(f"\n95% intervals ({metrics['intervals']['method']})")
    print(interval_table(metrics).to_string())
    out = (
        Path(args.out)
        if args.out
        else Path(args.model).resolve().parent / f"evaluation-{args.split}"
    )
    studies = study_predictions(predictions)
    written = [
        write_json(out / "metrics.json", metrics),
        write_text(out / "predictions.csv", predictions.to_csv(index=False, float_format="%.7g")),
        write_text(
            out / "studies.csv",
            study_table(predictions, threshold).to_csv(index=False, float_format="%.7g"),
        ),
        plot_roc(studies, out / "roc.png"),
        plot_confusion(studies, out / "confusion.png", threshold.value),
    ]
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
