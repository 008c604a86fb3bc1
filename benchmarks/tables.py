"""The documentation's tables of measured results, generated from the committed records.

    python -m benchmarks.tables            # rewrite every generated block in docs/
    python -m benchmarks.tables --check    # exit 1 naming each block that differs (CI)

A page holds a generated table between two markers:

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

and NAME is a key of `TABLES`: a function of the records that returns the block's Markdown,
caption included (the command that made the records, the CPUs and the dates they name). A
re-run that adds or replaces a record changes the pages only through this command, so a page
cannot hold a number its record does not.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.records import read_record
from mura_tf.evaluators.published import FRACATLAS_ELSEWHERE
from mura_tf.files import write_text

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REAL_FILMS = REPO / "benchmarks" / "results" / "real_films"
MAIN_JOB = REPO / "benchmarks" / "results" / "main_job"
OUTLINE_CHOICES = REPO / "benchmarks" / "results" / "outline_choices"
ENSEMBLES = REPO / "benchmarks" / "results" / "ensembles"
BLOCK = re.compile(
    r"(?P<start><!-- generated: (?P<name>[\w-]+)(?: (?P<arg>\S+))? -->\n)(?P<body>.*?)"
    r"(?P<end><!-- end generated -->)",
    re.S,
)
COMMAND = "python -m benchmarks.real_films --data-dir ../shared/data/fracatlas --image-size 64"


@dataclass(frozen=True)
class Record:
    """One finished run kept in `benchmarks/results/`: its settings, metrics and timing."""

    path: Path
    kind: str  # config.json's section: "experiment" or "pretrain"
    settings: dict
    metrics: dict
    timing: dict
    torch: dict | None

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])


def read_records(root: Path = REAL_FILMS) -> list[Record]:
    """Every run under `root` (a folder holding `config.json`), in path order."""
    records = []
    for config in sorted(root.rglob("config.json")):
        run = config.parent
        (kind, settings), *_ = json.loads(config.read_text()).items()
        torch = run / "torch_reference.json"
        records.append(
            Record(
                path=run,
                kind=kind,
                settings=settings,
                metrics=json.loads((run / "metrics.json").read_text()),
                timing=json.loads((run / "benchmark.json").read_text()),
                torch=json.loads(torch.read_text()) if torch.is_file() else None,
            )
        )
    return records


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _with_interval(value: float, interval: list[float] | None) -> str:
    if not interval:
        return _number(value)
    low, high = interval
    return f"{value:.3f} ({low:.3f} to {high:.3f})"


def _epoch(record: Record) -> str:
    return _epoch_text(record.metrics["selected_epoch"])


def _epoch_text(selected: dict) -> str:
    """`metrics.json`'s `selected_epoch` as the tables print it: `17 of 24 (stopped)`."""
    text = f"{selected['epoch']} of {selected['epochs_run']}"
    return text + " (stopped)" if selected.get("stopped_early") else text


def _minutes(record: Record) -> str:
    seconds = record.timing.get("seconds")
    return "" if seconds is None else f"{seconds / 60:.1f}"


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return _number(values[0]) if values else ""
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _caption(records: list[Record], command: str) -> str:
    cpus = sorted({r.timing["cpu"] for r in records})
    dates = sorted({r.timing["date"] for r in records})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return (
        f"Records: `{command}`, kept in `{REAL_FILMS.relative_to(REPO)}/`; "
        f"CPU: {'; '.join(cpus)}; run {when}. Minutes are wall time on that CPU."
    )


def _run_rows(records: list[Record], label: Callable[[Record], str]) -> list[str]:
    rows = [
        "| run | seed | epoch handed over | dev AUROC there | test AUROC (95%) | test kappa (95%) "
        "| accuracy | pointing (chance) | mass / share | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        study, where = r.metrics["study"], r.metrics.get("localisation")
        pointing = (
            f"{where['pointing_hit_rate']:.3f} ({where['pointing_chance']:.3f})" if where else ""
        )
        mass = f"{where['mass_in_outline'] / where['outline_share']:.2f}" if where else ""
        dev = _number(r.metrics["selected_epoch"]["value"])
        rows.append(
            f"| {label(r)} | {r.seed} | {_epoch(r)} | {dev}"
            f" | {_with_interval(study['auc'], study.get('auc_ci'))}"
            f" | {_with_interval(study['kappa'], study.get('kappa_ci'))}"
            f" | {_number(study['accuracy'])} | {pointing} | {mass} | {_minutes(r)} |"
        )
    return rows


def _summary_rows(groups: dict[str, list[Record]]) -> list[str]:
    rows = [
        "| run | seeds | dev AUROC, mean ± sd | test AUROC, mean ± sd | test kappa, mean ± sd |",
        "|---|---|---|---|---|",
    ]
    for name, records in groups.items():
        dev = [r.metrics["selected_epoch"]["value"] for r in records]
        auc = [r.metrics["study"]["auc"] for r in records]
        kappa = [r.metrics["study"]["kappa"] for r in records]
        seeds = ", ".join(str(r.seed) for r in records)
        rows.append(f"| {name} | {seeds} | {_mean_sd(dev)} | {_mean_sd(auc)} | {_mean_sd(kappa)} |")
    return rows


# The settings every `resnet18_mlp` record shares unless its row says otherwise.
RESNET_DEFAULTS = {"epochs": 12, "keep_aspect": False, "augment": ["autocontrast", "hflip"]}


def _resnet_setting(record: Record) -> str:
    """`default`, or the flags by which the record's run differs from the benchmark's
    `resnet18_mlp` at 64 px."""
    s = record.settings
    flags = []
    if s["keep_aspect"] != RESNET_DEFAULTS["keep_aspect"]:
        flags.append("--keep-aspect")
    if s["augment"] != RESNET_DEFAULTS["augment"]:
        flags.append("--augment " + ",".join(s["augment"]))
    if s["epochs"] != RESNET_DEFAULTS["epochs"]:
        flags.append(f"--epochs {s['epochs']}")
    return " ".join(f"`{f}`" for f in flags) or "default"


def _of(records: list[Record], recipe: str, size: int = 64) -> list[Record]:
    """The experiment records of `recipe` at `size` px."""
    return [
        r
        for r in records
        if r.settings.get("recipe") == recipe
        and r.kind == "experiment"
        and r.settings.get("image_size") == size
    ]


def _grouped(records: list[Record], key: Callable[[Record], str]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: (key(r) != "default", key(r), r.seed)):
        groups.setdefault(key(r), []).append(r)
    return groups


def resnet18_settings(records: list[Record]) -> str:
    """`resnet18_mlp` at 64 px: every setting tried, each row a run, then mean ± sd per setting."""
    runs = _of(records, "resnet18_mlp")
    groups = _grouped(runs, _resnet_setting)
    ordered = [r for group in groups.values() for r in group]
    lines = [
        _caption(ordered, COMMAND + " --runs resnet18_mlp [-- FLAGS]"),
        "",
        *_summary_rows(groups),
        "",
        *_run_rows(ordered, _resnet_setting),
    ]
    return "\n".join(lines)


def torch_twin(records: list[Record]) -> str:
    """`resnet18_mlp` at 64 px against its PyTorch twin (same films, schedule and dev metric)."""
    runs = [r for r in _of(records, "resnet18_mlp") if r.torch is not None]
    runs.sort(key=lambda r: r.seed)
    rows = [
        "| seed | Keras: epoch, test AUROC (95%), kappa | PyTorch twin: epoch, test AUROC (95%), "
        "kappa | twin's minutes |",
        "|---|---|---|---|",
    ]
    for r in runs:
        t, study = r.torch, r.metrics["study"]
        rows.append(
            f"| {r.seed} | {_epoch(r)}, {_with_interval(study['auc'], study.get('auc_ci'))}, "
            f"{study['kappa']:.3f} | {t['epoch'].replace('/', ' of ')}, {t['auroc']:.3f} "
            f"({t['auroc 95%'].replace('-', ' to ', 1)}), {t['kappa']:.3f} | {t['minutes']:.1f} |"
        )
    keras = [r.metrics["study"]["auc"] for r in runs]
    twin = [r.torch["auroc"] for r in runs]
    rows.append(f"| mean ± sd | {_mean_sd(keras)} | {_mean_sd(twin)} | |")
    command = COMMAND + " --runs resnet18_mlp,torch_resnet18_mlp"
    return "\n".join([_caption(runs, command), "", *rows])


def baseline_densenet(records: list[Record]) -> str:
    """Report 002's DenseNet169 baseline at 64 px, per seed and mean ± sd."""
    runs = sorted(_of(records, "baseline_densenet"), key=lambda r: r.seed)
    lines = [
        _caption(runs, COMMAND + " --runs baseline_densenet"),
        "",
        *_run_rows(runs, lambda r: "`baseline_densenet`"),
        "",
        *_summary_rows({"`baseline_densenet`": runs}),
    ]
    return "\n".join(lines)


def _simclr_label(record: Record) -> str:
    fraction = record.settings["label_fraction"]
    # `--encoder RUN` is recorded as the weights the run started from
    start = "random" if record.settings["weights"] in ("none", None) else "SimCLR"
    return f"{fraction:.0%} from {start}"


def simclr(records: list[Record]) -> str:
    """SimCLR pre-training, then fine-tuning at 1/10/100% of the labels against random starts."""
    runs = _of(records, "simclr_finetune")
    groups: dict[str, list[Record]] = {}

    def order(r: Record) -> tuple:
        return r.settings["label_fraction"], _simclr_label(r).endswith("random"), r.seed

    for r in sorted(runs, key=order):
        groups.setdefault(_simclr_label(r), []).append(r)
    pretrain = sorted((r for r in records if r.kind == "pretrain"), key=lambda r: r.seed)
    minutes = ", ".join(f"seed {r.seed}: {_minutes(r)}" for r in pretrain)
    ordered = [r for group in groups.values() for r in group]
    lines = [
        _caption(pretrain + ordered, COMMAND + " --runs simclr"),
        f"Pre-training, 10 epochs, minutes: {minutes}.",
        "",
        *_summary_rows(groups),
        "",
        *_run_rows(ordered, _simclr_label),
    ]
    return "\n".join(lines)


def synthetic_seeds(records: list[Record]) -> str:
    """The README's main job and `resnet18_mlp` on the synthetic elbow, per seed, then mean ±
    sd over seeds beside the mean width of one run's interval."""
    command = "python -m benchmarks.main_job --seeds 0,1,2 --record benchmarks/results/main_job"
    runs = read_records(MAIN_JOB)
    if not runs:
        return f"No records yet: run `{command}`."
    runs.sort(
        key=lambda r: (r.settings["recipe"] != "baseline_densenet", r.settings["recipe"], r.seed)
    )
    rows = [
        "| recipe | seed | epoch handed over | study AUROC (95%) | study kappa (95%) "
        "| study accuracy (95%) | image AUROC (95%) | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        study, image = r.metrics["study"], r.metrics["image"]
        rows.append(
            f"| `{r.settings['recipe']}` | {r.seed} | {_epoch(r)}"
            f" | {_with_interval(study['auc'], study.get('auc_ci'))}"
            f" | {_with_interval(study['kappa'], study.get('kappa_ci'))}"
            f" | {_with_interval(study['accuracy'], study.get('accuracy_ci'))}"
            f" | {_with_interval(image['auc'], image.get('auc_ci'))}"
            f" | {r.timing['seconds']:.0f} s |"
        )
    summary = [
        "",
        "| recipe | study AUROC, mean ± sd | one run's interval, mean width "
        "| study kappa, mean ± sd | one run's interval, mean width |",
        "|---|---|---|---|---|",
    ]
    for recipe in dict.fromkeys(r.settings["recipe"] for r in runs):
        docs = [r.metrics["study"] for r in runs if r.settings["recipe"] == recipe]
        widths = {
            key: statistics.mean(d[f"{key}_ci"][1] - d[f"{key}_ci"][0] for d in docs)
            for key in ("auc", "kappa")
        }
        summary.append(
            f"| `{recipe}` | {_mean_sd([d['auc'] for d in docs])} | {widths['auc']:.3f}"
            f" | {_mean_sd([d['kappa'] for d in docs])} | {widths['kappa']:.3f} |"
        )
    caption = (
        _caption(runs, command)
        .replace(
            f"kept in `{REAL_FILMS.relative_to(REPO)}/`", f"kept in `{MAIN_JOB.relative_to(REPO)}/`"
        )
        .replace("Minutes are wall time on that CPU.", "Wall time on that CPU, one run at a time.")
    )
    return "\n".join([caption, "", *rows, *summary])


def _read_json_records(where: Path) -> list[dict]:
    path = REPO / where
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise SystemExit(f"no benchmark record at {where}: run the benchmark with --record")
    return [read_record(f) for f in files]


def _when(found: list[dict]) -> str:
    dates = sorted({r["date"] for r in found})
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


def _provenance(found: list[dict], where: str) -> str:
    cpus = "; ".join(sorted({r["cpu"] for r in found}))
    versions = "; ".join(sorted({r["versions"] for r in found if r.get("versions")}))
    transcribed = [r for r in found if r.get("source") == "transcribed"]
    source = (
        " Transcribed from the benchmark's printout (before benchmarks kept records); a re-run "
        "with `--record` replaces it."
        if transcribed
        else ""
    )
    return (
        f"Record{'s' if len(found) > 1 else ''}: `{where}`; CPU: {cpus}; {versions}; "
        f"{_when(found)}.{source}"
    )


def _flag(command: str, name: str, default: str | None = None) -> str | None:
    words = command.split()
    return words[words.index(name) + 1] if name in words[:-1] else default


PRECISION = {"on": "bfloat16", "off": "float32", "auto": "auto"}


def _speed_label(command: str) -> tuple[str, str]:
    """(benchmark, precision) of a harness record's command, as the table names them."""
    module = command.split()[2].removeprefix("benchmarks.")
    size = _flag(command, "--size")
    precision = PRECISION[_flag(command, "--mixed-precision", "off")]
    if module == "train_step":
        model = {"resnet18": "ResNet18", "densenet169": "DenseNet169"}[_flag(command, "--model")]
        label = f"{model} train step, {size or 224} px"
    elif module == "inference":
        label = "inference, PNG bytes -> probability, 256 px"
    elif module == "simclr_step":
        label = "SimCLR step, ResNet18, 128 px"
    elif module == "pipeline":
        films = "FracAtlas JPEGs" if _flag(command, "--data-dir") else "synthetic PNGs"
        label, precision = f"input pipeline, {films}, {size or 256} px", "uint8 -> float32"
    else:
        label = module
    if _flag(command, "--torch-compile") == "true":
        label += ", PyTorch compiled"
    return label, precision


def speed_table(_: list[Record], where: str) -> str:
    """Keras against PyTorch, one row per harness record in the folder `where`."""
    found = _read_json_records(Path(where))
    rows = [
        "| benchmark | precision | Keras vs PyTorch, img/s | ratio | paired range "
        "| spread (Keras / PyTorch) | peak RSS MB (Keras / PyTorch) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in found:
        c = r["comparison"]
        keras, torch = c["keras"], c["torch"]
        label, precision = _speed_label(r["command"])
        low, high = c["paired"]
        rows.append(
            f"| {label} | {precision} | {keras['median']:.2f} vs {torch['median']:.2f} "
            f"| **{c['ratio']:.2f}×** | {low:.2f}-{high:.2f}× "
            f"| {keras['spread']:.0%} / {torch['spread']:.0%} "
            f"| {keras['peak_rss_mb']:.0f} / {torch['peak_rss_mb']:.0f} |"
        )
    commands = ["```bash", *(r["command"] for r in found), "```"]
    lines = [_provenance(found, where) + " One invocation per row, one after another:", "",
             *commands, "", *rows]  # fmt: skip
    return "\n".join(lines)


def record_table(_: list[Record], where: str) -> str:
    """One record's table as its benchmark printed it, under its command."""
    (record,) = _read_json_records(Path(where))
    commands = record["command"] if isinstance(record["command"], list) else [record["command"]]
    rows = [
        "| " + " | ".join(record["columns"]) + " |",
        "|" + "---|" * len(record["columns"]),
        *("| " + " | ".join(row) + " |" for row in record["rows"]),
    ]
    lines = [_provenance([record], where), "", "```bash", *commands, "```", "", *rows]
    return "\n".join(lines)


# Tables of one argument: the record (a file) or records (a folder) they are made from.
RECORD_TABLES: dict[str, Callable[[list[Record], str], str]] = {
    "speed": speed_table,
    "record": record_table,
}


def _pointing(where: dict | None) -> tuple[str, str]:
    if not where:
        return "", ""
    return (
        f"{where['pointing_hit_rate']:.3f} ({where['pointing_chance']:.3f})",
        f"{where['mass_in_outline'] / where['outline_share']:.2f}",
    )


def outline_guided(records: list[Record]) -> str:
    """At 128 px: `resnet18_mlp` against `fracatlas_outlines` (the outline-guided recipe),
    per seed, Grad-CAM and the outline head's own map scored against the outlines."""
    command = COMMAND.replace("--image-size 64", "--image-size 128")
    command += " --runs resnet18_mlp,fracatlas_outlines"
    runs = _of(records, "resnet18_mlp", 128) + _of(records, "fracatlas_outlines", 128)
    if not runs:
        return f"No records yet: run `{command}`."
    runs.sort(key=lambda r: (r.settings["recipe"], r.settings.get("outline_weight", 0), r.seed))

    def label(r: Record) -> str:
        weight = r.settings.get("outline_weight") or 0
        return f"`{r.settings['recipe']}`" + (f", outline weight {weight:g}" if weight else "")

    rows = [
        "| run | seed | epoch handed over | dev AUROC there | test AUROC (95%) | test kappa (95%) "
        "| Grad-CAM pointing (chance) | Grad-CAM mass / share | outline head pointing "
        "| outline head mass / share | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        study = r.metrics["study"]
        cam = _pointing(r.metrics.get("localisation"))
        own = _pointing(r.metrics.get("localisation_outline_head"))
        dev = _number(r.metrics["selected_epoch"]["value"])
        rows.append(
            f"| {label(r)} | {r.seed} | {_epoch(r)} | {dev}"
            f" | {_with_interval(study['auc'], study.get('auc_ci'))}"
            f" | {_with_interval(study['kappa'], study.get('kappa_ci'))}"
            f" | {cam[0]} | {cam[1]} | {own[0]} | {own[1]} | {_minutes(r)} |"
        )
    groups: dict[str, list[Record]] = {}
    for r in runs:
        groups.setdefault(label(r), []).append(r)
    return "\n".join([_caption(runs, command), "", *_summary_rows(groups), "", *rows])


# `recipes.fracatlas_outlines`'s defaults of the settings a choice varies (tests/test_docs.py
# checks them against the recipe): a row's label is how its runs differ from them.
OUTLINE_DEFAULTS = {
    "image_size": 128, "epochs": 24, "patience": 8,
    "augment": ["autocontrast", "hflip", "rotate", "scale", "translate"],
    "outline_weight": 3.0, "learning_rate": 0.001, "optimizer": "adam", "batch_size": 32,
    "keep_aspect": False, "reduce_lr_on_plateau": False, "ema": 0.99,
}  # fmt: skip


# The value a run had of a setting added after it ran (the setting's `legacy`, which
# tests/test_docs.py checks against `Experiment`): `--ema` was off before it existed.
BEFORE = {"ema": 0.0}


def _choice_label(settings: dict) -> str:
    flags = []
    for key, default in OUTLINE_DEFAULTS.items():
        value = settings.get(key, BEFORE.get(key, default))
        if value != default:
            flag = f"--{key.replace('_', '-')}"
            if value is True:  # a switch: its flag alone
                flags.append(flag)
                continue
            shown = ",".join(value) if isinstance(value, list) else f"{value:g}" if isinstance(
                value, float) else str(value)  # fmt: skip
            flags.append(f"{flag} {shown}")
    return "`" + " ".join(flags) + "`" if flags else "the recipe's defaults"


def _choice_runs() -> list[tuple[Path, dict, dict]]:
    """(folder, settings, metrics) of every finished `fracatlas_outlines` run kept in
    `outline_choices/` and `real_films/`."""
    runs = []
    for root in (OUTLINE_CHOICES, REAL_FILMS / "fracatlas_outlines"):
        for metrics in sorted(root.rglob("metrics.json")):
            (_, settings), *_ = json.loads((metrics.parent / "config.json").read_text()).items()
            runs.append((metrics.parent, settings, json.loads(metrics.read_text())))
    return runs


def _train_auc(members: list[tuple[Path, dict, dict]]) -> str:
    """The training AUROC Keras logged (augmented films, the epoch's running value) at the
    epoch each run handed over and at its last, averaged over the runs: how far the network
    fits its training films beyond dev."""
    there, last = [], []
    for path, _, metrics in members:
        with open(path / "history.csv", newline="") as f:
            auc = [float(row["auc"]) for row in csv.DictReader(f)]
        chosen = metrics["selected_epoch"]
        there.append(auc[chosen["epoch"] - chosen["epoch_base"]])
        last.append(auc[-1])
    return f"{statistics.mean(there):.3f} ({statistics.mean(last):.3f})"


def outline_choices(_: list[Record]) -> str:
    """Each setting of `fracatlas_outlines` tried, over its seeds: dev AUROC and the outline
    head's dev pointing game (what a default is chosen by), then test, never chosen on."""
    runs = _choice_runs()
    if not runs:
        return "No records yet."
    groups: dict[str, list[tuple[Path, dict, dict]]] = {}
    for run in sorted(runs, key=lambda r: (_choice_label(r[1]), r[1]["seed"])):
        groups.setdefault(_choice_label(run[1]), []).append(run)
    rows = [
        "| settings | seeds | dev AUROC per seed | dev AUROC, mean ± sd | outline head's dev "
        "pointing, mean (chance) | test AUROC, mean ± sd | test kappa, mean ± sd | outline "
        "head's test pointing, mean | Grad-CAM's test pointing, mean | epochs run | train AUC "
        "at the epoch handed over (at the last), mean |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, members in groups.items():
        dev = [m["selected_epoch"]["value"] for _, _, m in members]
        own = [m.get("localisation_outline_head", {}) for _, _, m in members]
        dev_pointing = [o["dev"]["pointing_hit_rate"] for o in own if "dev" in o]
        chance = [o["dev"]["pointing_chance"] for o in own if "dev" in o]
        scored = f"{statistics.mean(dev_pointing):.3f} ({statistics.mean(chance):.3f})" + (
            f", {len(dev_pointing)} of {len(own)} seeds" if len(dev_pointing) < len(own) else ""
        ) if dev_pointing else ""  # fmt: skip
        cam = [m["localisation"]["pointing_hit_rate"] for _, _, m in members]
        rows.append(
            f"| {label} | {', '.join(str(s['seed']) for _, s, _ in members)}"
            f" | {', '.join(f'{v:.3f}' for v in dev)} | {_mean_sd(dev)} | {scored}"
            f" | {_mean_sd([m['study']['auc'] for _, _, m in members])}"
            f" | {_mean_sd([m['study']['kappa'] for _, _, m in members])}"
            f" | {statistics.mean(o['pointing_hit_rate'] for o in own):.3f}"
            f" | {statistics.mean(cam):.3f}"
            f" | {', '.join(str(m['selected_epoch']['epochs_run']) for _, _, m in members)}"
            f" | {_train_auc(members)} |"
        )
    where = ", ".join(
        f"`{root.relative_to(REPO)}/`"
        for root in (OUTLINE_CHOICES, REAL_FILMS / "fracatlas_outlines")
    )
    timings = [json.loads((path / "benchmark.json").read_text()) for path, _, _ in runs]
    cpus = "; ".join(sorted({t["cpu"] for t in timings}))
    dates = sorted({t["date"] for t in timings})
    caption = (
        "Records: `python -m recipes.fracatlas_outlines --data-dir ../shared/data/fracatlas "
        f"--seed S FLAGS`, kept in {where}; CPU: {cpus}; run "
        f"{dates[0] if len(dates) == 1 else f'{dates[0]} to {dates[-1]}'}."
    )
    return "\n".join([caption, "", *rows])


def _choice_row(metrics: dict, label: str) -> str:
    study = metrics["study"]
    cam = _pointing(metrics.get("localisation"))
    own = _pointing(metrics.get("localisation_outline_head"))
    selected = metrics.get("selected_epoch")
    if selected:
        epoch, dev = _epoch_text(selected), _number(selected["value"])
    else:  # an ensemble chose no epoch; it was scored on the dev films no member trained on
        epoch, dev = "–", _number((metrics.get("dev") or {}).get("study_auc"))
    return (
        f"| {label} | {epoch} | {dev}"
        f" | {_with_interval(study['auc'], study.get('auc_ci'))}"
        f" | {_with_interval(study['kappa'], study.get('kappa_ci'))}"
        f" | {cam[0]} | {cam[1]} | {own[0]} | {own[1]} |"
    )


def outline_recipe(records: list[Record]) -> str:
    """`fracatlas_outlines` at its defaults: each seed, their mean, and the recipe's output
    (their ensemble), beside the from-scratch baseline at 128 px and the published figures."""
    seeds = [run for run in _choice_runs() if _choice_label(run[1]) == "the recipe's defaults"]
    if not seeds:
        return "No records yet."
    names = {path.name for path, _, _ in seeds}
    ensembles = []
    for config in sorted(ENSEMBLES.rglob("config.json")):
        members = json.loads(config.read_text())["ensemble"]["members"]
        if {Path(m).name for m in members} == names:
            ensembles.append(config.parent)
    header = [
        "| model | epoch handed over | dev AUROC there | test AUROC (95%) | test kappa (95%) "
        "| Grad-CAM pointing (chance) | Grad-CAM mass / share | outline map pointing "
        "| outline map mass / share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [_choice_row(metrics, f"seed {settings['seed']}") for _, settings, metrics in seeds]
    metrics = [m for _, _, m in seeds]

    def mean(get) -> str:
        return _mean_sd([get(m) for m in metrics])

    rows.append(
        f"| the {len(seeds)} seeds, mean ± sd | | {mean(lambda m: m['selected_epoch']['value'])}"
        f" | {mean(lambda m: m['study']['auc'])} | {mean(lambda m: m['study']['kappa'])}"
        f" | {mean(lambda m: m['localisation']['pointing_hit_rate'])} | "
        f" | {mean(lambda m: m['localisation_outline_head']['pointing_hit_rate'])} | |"
    )
    for folder in ensembles:
        found = json.loads((folder / "metrics.json").read_text())
        label = f"**the recipe: the ensemble of the {len(seeds)} seeds**"
        rows.append(_choice_row(found, label))
    baseline = _of(records, "resnet18_mlp", 128)
    if baseline:
        rows.append(
            f"| `resnet18_mlp` from scratch, 128 px, {len(baseline)} seeds, mean ± sd | |"
            f" {_mean_sd([r.metrics['selected_epoch']['value'] for r in baseline])}"
            f" | {_mean_sd([r.metrics['study']['auc'] for r in baseline])}"
            f" | {_mean_sd([r.metrics['study']['kappa'] for r in baseline])}"
            f" | {_mean_sd([r.metrics['localisation']['pointing_hit_rate'] for r in baseline])}"
            " | | | |"
        )
    published: dict[str, dict[str, str]] = {}  # model -> {metric: value (interval)}
    for model, metric, value, interval in FRACATLAS_ELSEWHERE:
        shown = _with_interval(value, list(interval) if interval else None)
        published.setdefault(model, {})[metric] = shown
    for model, shown in published.items():
        rows.append(
            f"| *published, other split:* {model} | | | {shown.get('auc', '')} | |"
            f" {shown.get('pointing game', '')} | | | |"
        )
    where = [seeds[0][0].parent, *ensembles]
    caption = (
        "Records: the recipe's defaults, one seed each (`python -m recipes.fracatlas_outlines "
        "--data-dir ../shared/data/fracatlas --ensemble 1 --seed S`), and their ensemble "
        "(the recipe's default `--ensemble 3`), kept in "
        + ", ".join(f"`{w.relative_to(REPO)}/`" for w in where)
        + f"; the baseline in `{REAL_FILMS.relative_to(REPO)}/`. CPU: "
        + "; ".join(
            sorted({json.loads((p / "benchmark.json").read_text())["cpu"] for p, _, _ in seeds})
        )  # fmt: skip
        + "."
    )
    return "\n".join([caption, "", *header, *rows])


TABLES: dict[str, Callable[[list[Record]], str]] = {
    "outline-recipe": outline_recipe,
    "real-films-outlines": outline_guided,
    "outline-choices": outline_choices,
    "synthetic-seeds": synthetic_seeds,
    "real-films-resnet18": resnet18_settings,
    "real-films-torch-twin": torch_twin,
    "real-films-densenet": baseline_densenet,
    "real-films-simclr": simclr,
}


def render(text: str, records: list[Record]) -> str:
    """`text` with every generated block made anew from `records`."""

    def block(match: re.Match) -> str:
        name, arg = match["name"], match["arg"]
        if arg is not None and name in RECORD_TABLES:
            return f"{match['start']}{RECORD_TABLES[name](records, arg)}\n{match['end']}"
        if arg is None and name in TABLES:
            return f"{match['start']}{TABLES[name](records)}\n{match['end']}"
        known = [*TABLES, *(f"{n} PATH" for n in RECORD_TABLES)]
        raise SystemExit(f"unknown generated block {name!r}: one of {', '.join(known)}")

    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tables",
        description="Generate the documentation's result tables from benchmarks/results/.",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="change nothing; exit 1 naming every page whose generated blocks are stale",
    )  # fmt: skip
    args = parser.parse_args(argv)
    records = read_records()
    stale = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        made = render(text, records)
        if made == text:
            continue
        stale.append(page.relative_to(REPO))
        if not args.check:
            write_text(page, made)  # a temporary name, then renamed: never a half-written page
    if args.check and stale:
        print(
            "stale generated tables in " + ", ".join(map(str, stale))
            + ": run python -m benchmarks.tables",
            file=sys.stderr,
        )  # fmt: skip
        return 1
    for page in stale:
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
