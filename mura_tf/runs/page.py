"""`report.html`: one self-contained page per finished run (images embedded, no network).

For a supervised run: the settings; image- and study-level metrics, overall and per part; the
study-level ROC and confusion matrices; the training curves with the epoch handed over marked;
per part, the most confident correct and the most confident wrong test studies with their
views under Grad-CAM; and the published figures for the same experiment beside this run's
(`mura_tf.evaluators.published`). For SimCLR pre-training: the settings, the curves and the
linear probes.

Written by every run just before `metrics.json` (so a finished run always has one), and again
on demand by `mura-tf report --run RUN`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mura_tf.data.catalogue import outlines_of_films
from mura_tf.data.datasets import dataset_of_parts, short_name
from mura_tf.errors import ConfigError
from mura_tf.evaluators.intervals import interval_text, value_with_interval
from mura_tf.evaluators.metrics import interval_table, metrics_table, study_predictions
from mura_tf.evaluators.plots import plot_confusion, plot_curves, plot_reliability, plot_roc
from mura_tf.evaluators.published import published_for
from mura_tf.evaluators.routing import confusion_frame
from mura_tf.evaluators.thresholds import MURA_THRESHOLD
from mura_tf.files import write_text
from mura_tf.runs.kinds import ABNORMALITY_SECTIONS, SECTIONS, kind_of_section

REPORT_FILE = "report.html"

# Encoded films (object array [N] of bytes) -> (probability [N], cam [N, S, S], content [N, 4]).
Cams = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } .note { background: #fff4d6; padding: 0.6em 1em; border-radius: 4px; }
.muted { color: #777; font-size: 0.9em; } figure { margin: 1em 0; }
"""

# Marks an image that failed to load (and counts them on <body>, which the browser test reads).
BROKEN_IMAGES = """
<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
  broken.forEach(i => i.replaceWith(`[image failed to load: ${i.alt}]`));
  document.body.dataset.brokenImages = String(broken.length);
  document.body.dataset.images = String(document.images.length + broken.length);
});
</script>
"""


def _png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    return frame.to_html(index=index, border=0, float_format=lambda v: f"{v:.3f}", na_rep="")


def _settings(run_config: dict, section: str) -> str:
    settings = run_config.get(section, {})
    rows = [(k, json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in settings.items()]
    rows += [("data_dir", run_config.get("data_dir")), ("strategy", run_config.get("strategy"))]
    frame = pd.DataFrame(rows, columns=["setting", "value"]).astype(str)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in run_config.get("notes", []))
    return _table(frame, index=False) + (f"<ul class=muted>{notes}</ul>" if notes else "")


def _confident_studies(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per part, the most confident correct and the most confident wrong test study."""

    studies = study_predictions(predictions)
    studies["correct"] = (studies["probability"] >= MURA_THRESHOLD) == (studies["label"] == 1)
    studies["confidence"] = (studies["probability"] - MURA_THRESHOLD).abs()
    picked = (
        studies.sort_values("confidence", ascending=False)
        .groupby(["part", "correct"], sort=True)
        .head(1)
    )
    return picked.sort_values(["part", "correct"], ascending=[True, False])


def _published(run_config: dict, metrics: dict, label: str) -> str:
    settings = next(run_config[k] for k in ABNORMALITY_SECTIONS if k in run_config)
    parts = list(metrics["per_part"])
    rows = []
    every_part = settings.get("part") == "all"
    for item in published_for(settings["recipe"], label, parts, every_part):
        doc = metrics if item.part == "all" else metrics["per_part"].get(item.part)
        # Report 000 counted test images; report 002 and the paper scored studies.
        level = "image" if item.source.startswith("report 000") else "study"
        mine = doc[level].get(item.metric) if doc else None
        mine_ci = doc[level].get(f"{item.metric}_ci") if doc else None
        if item.metric == "pointing game":  # Grad-CAM's, on the outlined test films
            level, mine_ci = "Grad-CAM", None
            mine = metrics.get("localisation", {}).get("pointing_hit_rate")
        rows.append(
            {
                "source": item.source,
                "experiment": item.experiment,
                "part": "all" if item.part == "all" else short_name(item.part),
                "metric": f"{level} {item.metric}",
                "published (95% interval)": value_with_interval(item.value, item.interval),
                "this run (95% interval)": value_with_interval(mine, mine_ci),
            }
        )
    return _table(pd.DataFrame(rows), index=False) if rows else "<p>none</p>"


def build_report(
    run_dir: str | os.PathLike[str], metrics: dict | None = None, cams: Cams | None = None
) -> str:
    """The report page of the run in `run_dir` as HTML text.

    `metrics` defaults to the run's `metrics.json` (a run writes its report before that file,
    passing them in); `cams` (`mura_tf.serving.gradcam.film_cams`: a run passes its model in memory)
    defaults to the export's Grad-CAM.
    """
    run_dir = Path(run_dir)
    run_config = json.loads((run_dir / "config.json").read_text())
    if metrics is None:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    section = next(k for k in SECTIONS if k in run_config)
    settings = run_config[section]
    label = run_config.get("label") or settings.get("recipe", section)
    body = [f"<h1>{html.escape(label)}: {html.escape(str(run_dir))}</h1>"]
    if settings.get("synthetic") or "synthetic" in str(run_config.get("data_dir", "")):
        published = (
            " The published figures below come from real MURA with ImageNet weights: they show "
            "what the experiment reaches there, not what this run should reach."
            if section in ABNORMALITY_SECTIONS
            else ""
        )
        body.append(
            "<p class=note>Trained and tested on the synthetic MURA this project generates."
            f"{published}</p>"
        )
    selected = metrics.get("selected_epoch") or {}
    if selected:
        how = "early stopping" if selected.get("stopped_early") else "all epochs run"
        body.append(
            f"<p>Model handed over: epoch {selected['epoch']} of {selected['epochs_run']} "
            f"({how}), the best dev {html.escape(selected['monitor'])} = "
            f"{selected['value']:.4f}.</p>"
        )
    with tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp)
        sections = kind_of_section(section).report
        routing = _router_section(metrics["router"], section) if "routing" in sections else []
        if "abnormality" in sections:  # a cascade's routing right below its metrics
            body += _supervised_sections(
                run_dir, run_config, metrics, label, figures, cams, after_metrics=routing
            )
        else:
            body += routing
        if "pretrain" in sections:
            body += _pretrain_sections(metrics)
        history = run_dir / "history.csv"
        if history.is_file():
            frame = pd.read_csv(history)
            curves = plot_curves(frame, figures / "curves.png", label, selected.get("epoch"))
            body += ["<h2>Training curves</h2>", _png(curves, "training curves")]
    body += ["<h2>Settings</h2>", _settings(run_config, section)]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(label)}: run report</title><style>{STYLE}</style></head>"
        "<body>\n" + "\n".join(body) + BROKEN_IMAGES + "</body></html>\n"
    )


def _supervised_sections(
    run_dir: Path,
    run_config: dict,
    metrics: dict,
    label: str,
    figures: Path,
    cams: Cams | None,
    after_metrics: Sequence[str] = (),
) -> list[str]:

    predictions = pd.read_csv(run_dir / "predictions.csv")
    studies = study_predictions(predictions)
    info = dataset_of_parts(metrics["per_part"])
    out = [
        "<h2>Test metrics</h2>",
        f"<p class=muted>{info.title}'s {info.test_split} split; label 1: {info.positive}; a "
        f"study's probability is the mean of its views', decided at {MURA_THRESHOLD}.</p>",
        _table(metrics_table(metrics)),
        *_interval_section(metrics, interval_table(metrics)),
        *_calibration_section(metrics, figures),
        *after_metrics,
        "<h2>ROC and confusion (study level)</h2>",
        _png(plot_roc(studies, figures / "roc.png"), "ROC curves"),
        _png(plot_confusion(studies, figures / "confusion.png"), "confusion matrices"),
        "<h2>Published figures for this experiment</h2>",
        _published(run_config, metrics, label),
        "<h2>Most confident right and wrong test studies, with Grad-CAM</h2>",
    ]
    out += _confident_section(run_dir, predictions, figures, cams)
    if "localisation" in metrics:
        out += _localisation_section(
            run_dir, run_config, metrics["localisation"], figures, cams,
            metrics.get("localisation_outline_head"),
        )  # fmt: skip
    return out


SHOWN_FILMS = 3


def _interval_section(metrics: dict, table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    how = metrics["intervals"]
    return [
        f"<p class=muted>95% intervals: {html.escape(how['method'])}, {how['resamples']} "
        f"resamples, seed {how['seed']}.</p>",
        _table(table),
    ]


def _calibration_section(metrics: dict, figures: Path) -> list[str]:
    """The reliability diagram and the operating points (thresholds chosen on dev)."""
    if "calibration" not in metrics:
        return []

    points = metrics.get("operating_points", {})
    rows = {
        name: {
            "threshold": doc["threshold"],
            "sensitivity": doc["sensitivity"],
            "sensitivity 95% CI": interval_text(doc["sensitivity_ci"]),
            "specificity": doc["specificity"],
            "specificity 95% CI": interval_text(doc["specificity_ci"]),
        }
        for name, doc in points.items()
        if isinstance(doc, dict)
    }
    out = [
        "<h2>Calibration and operating points (test studies)</h2>",
        _png(plot_reliability(metrics["calibration"], figures / "reliability.png"),
             "reliability diagram"),
        f"<p class=muted>{html.escape(metrics['calibration']['binning'])}.</p>",
    ]  # fmt: skip
    if rows:
        out += [
            _table(pd.DataFrame(rows).T),
            f"<p class=muted>{html.escape(points['method'])}; protocol is MURA's 0.5, youden "
            "the dev split's best sensitivity + specificity, specificity_90/95 the dev "
            "thresholds that reach that specificity.</p>",
        ]
    return out


def _localisation_section(
    run_dir: Path,
    run_config: dict,
    localisation: dict,
    figures: Path,
    cams: Cams | None,
    outline_head: dict | None = None,
) -> list[str]:
    """The localisation scores, overall and per part, and the most and least confident
    fractured test films under Grad-CAM with the radiologists' outline drawn on them; for an
    outline-guided run, the outline head's scores and its own map of the same films."""
    # TensorFlow only for a page with a Grad-CAM gallery; `mura-tf report` stays free of it.
    from mura_tf.serving.load import load_cam_serving, load_outline_serving
    from mura_tf.serving.predict import write_cams

    keys = ["films", "pointing_hit_rate", "pointing_chance", "mass_in_outline", "outline_share"]
    rows = {"all": localisation, **localisation["per_part"]}
    table = pd.DataFrame({short_name(k) if k != "all" else k: v for k, v in rows.items()})
    out = [
        "<h2>Where it looked: Grad-CAM against the radiologists' outlines</h2>",
        f"<p class=muted>{html.escape(localisation['method'])}.</p>",
        _table(table.loc[keys].T),
    ]
    if outline_head:
        maps = {"Grad-CAM": localisation, "the outline head's own map": outline_head}
        both = pd.DataFrame({name: {k: doc[k] for k in keys} for name, doc in maps.items()})
        for name, doc in maps.items():
            if "dev" in doc:
                both[f"{name}, dev films"] = pd.Series({k: doc["dev"][k] for k in keys})
        out += [
            "<p>Trained with the outline loss: its outline head's own map, scored the same "
            "way (test films; dev films, by which settings are chosen, beside them).</p>",
            _table(both.T),
        ]
    scores_file = run_dir / "localisation.csv"
    if not scores_file.is_file():
        return out
    scores = pd.read_csv(scores_file).sort_values("probability", ascending=False)
    picked = pd.concat([scores.head(SHOWN_FILMS), scores.tail(SHOWN_FILMS)]).drop_duplicates()
    outlines = outlines_of_films(picked["path"])
    if not outlines:
        return out + ["<p class=muted>The films are no longer where the run read them.</p>"]
    try:
        cams = cams or load_cam_serving(run_dir)
    except ConfigError as e:
        return out + [f"<p class=muted>No Grad-CAM: {html.escape(str(e))}</p>"]
    films = picked.assign(study=[Path(p).name for p in picked["path"]])
    sheets = write_cams(cams, films, figures / "outlined", outlines=outlines)
    own = load_outline_serving(run_dir) if outline_head else None
    own_sheets = (
        write_cams(own, films, figures / "outline_head", outlines=outlines)
        if own is not None
        else [None] * len(sheets)
    )
    rows_and_sheets = zip(films.itertuples(), sheets, own_sheets, strict=True)
    for rank, (row, sheet, own_sheet) in enumerate(rows_and_sheets):
        which = "most" if rank < min(SHOWN_FILMS, len(scores)) else "least"
        verdict = "hit" if row.hit else "miss"
        out += [
            f"<figure><figcaption>{short_name(row.part)}: {which} confident fractured film "
            f"(probability {row.probability:.3f}; Grad-CAM: pointing game {verdict}, "
            f"{row.mass:.0%} of the map inside the outline, which covers {row.share:.1%})"
            "</figcaption>",
            _png(sheet, f"Grad-CAM and outline of {Path(row.path).name}"),
        ]
        if own_sheet is not None:
            out += [
                "<figcaption>the outline head's own map of the same film</figcaption>",
                _png(own_sheet, f"outline head's map and outline of {Path(row.path).name}"),
            ]
        out.append("</figure>")
    return out


def _confident_section(
    run_dir: Path, predictions: pd.DataFrame, figures: Path, cams: Cams | None
) -> list[str]:
    # TensorFlow only for a page with a Grad-CAM gallery; `mura-tf report` stays free of it.
    from mura_tf.serving.load import load_cam_serving
    from mura_tf.serving.predict import write_cams

    try:
        cams = cams or load_cam_serving(run_dir)
    except ConfigError as e:
        return [f"<p class=muted>No Grad-CAM: {html.escape(str(e))}</p>"]
    picked = list(_confident_studies(predictions).itertuples())
    if not picked:
        return ["<p>no test studies</p>"]
    views = pd.concat([predictions[predictions["study"] == s.study] for s in picked])
    sheets = write_cams(cams, views, figures / "cams")  # one sheet per study, in picked order
    out = []
    for study, sheet in zip(picked, sheets, strict=True):
        verdict = "right" if study.correct else "wrong"
        info = dataset_of_parts([study.part])
        truth = info.positive if study.label == 1 else info.negative
        out += [
            f"<figure><figcaption>{short_name(study.part)}: most confident {verdict} "
            f"(truth {truth}, probability {study.probability:.3f})</figcaption>",
            _png(sheet, f"Grad-CAM of {study.study}"),
            "</figure>",
        ]
    return out


def _router_section(routing: dict, section: str) -> list[str]:
    """The body-part routing (`evaluators.routing.routing_metrics`): scores and confusion."""

    image, study = routing["image"], routing["study"]
    scores = pd.DataFrame(
        {"accuracy": [image["accuracy"], study["accuracy"]],
         "macro F1": [image["macro_f1"], study["macro_f1"]],
         "n": [image["n"], study["n"]]},
        index=["views (each view's own part)", "studies (majority vote of the views)"],
    )  # fmt: skip
    title = "Body-part routing of the test studies" if section == "cascade" else "Body parts"
    return [
        f"<h2>{title}</h2>",
        _table(scores),
        f"<p>{routing['wrong_part_studies']} of {routing['studies']} test studies went to the "
        f"wrong part; in {routing['views_disagreed_studies']} the views disagreed and the "
        "majority decided.</p>",
        "<p class=muted>Study counts: rows the true part, columns the part routed to.</p>",
        _table(confusion_frame(routing)),
    ]


def _pretrain_sections(metrics: dict) -> list[str]:
    out = [
        "<h2>Pre-training</h2>",
        f"<p>Dev NT-Xent {metrics.get('val_loss', float('nan')):.3f}, train "
        f"{metrics.get('loss', float('nan')):.3f}, contrastive accuracy "
        f"{metrics.get('contrastive_accuracy', float('nan')):.3f}.</p>",
    ]
    probes = {
        "pre-trained encoder": metrics.get("linear_probe"),
        "random initialisation": metrics.get("linear_probe_at_init"),
    }
    rows = {
        name: {f"{level} {k}": v for level in ("image", "study") for k, v in probe[level].items()}
        for name, probe in probes.items()
        if probe
    }
    if rows:
        out += ["<h2>Linear probes (abnormality)</h2>", _table(pd.DataFrame(rows).T)]
    return out


def write_run_report(
    run_dir: str | os.PathLike[str], metrics: dict | None = None, cams: Cams | None = None
) -> Path:
    """Write `RUN/report.html` atomically; see `build_report`."""

    return write_text(Path(run_dir) / REPORT_FILE, build_report(run_dir, metrics, cams))
