"""The part-router cascade of report 000 §3.3-3.4: a body-part router sends each study to the
abnormality model of its part.

Report 000 concludes that "a system that first identifies the bone and then independently
trains on images from each bone class is the most effective approach". Here that system is
assembled from finished runs: a router (`mura_tf.runs.router`, e.g. `recipes.part_router`), one
expert per part (a run trained on that part alone, e.g. `resnet18_per_part --part hand`), and
optionally a fallback (a run on every part) for the parts without an expert of their own.

A MURA study holds one part, so a study goes to the part its views vote for
(`mura_tf.evaluators.routing.study_votes`); a single film goes to its own most likely part.
The cascade is a run folder like any other: `config.json` (section "cascade": the router, the
expert of each part and the rule), `predictions.csv`, `metrics.json` (the usual study-level metrics
beside the router's confusion matrix on the test studies and how many went to the wrong
part), `report.html`, and `export/`, one SavedModel holding router and experts with a single
run's signatures (`mura_tf.serving.export`; `serve` and `serve_images` route each film by
itself) and two more:

- `serve_study_images`: the encoded films of one study, string `[N]` -> `probability`
  `[N, 1]` (every view scored by the expert of the study's part) and `part` (int32, the index
  of the voted part in `PARTS`); `mura-tf predict` and `mura-tf evaluate` use it per study;
- `route_images`: encoded films -> `part_probabilities` `[N, 7]` and `part` `[N]`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.compat.empty_batch import unless_empty
from mura_tf.data.normalization import normalize
from mura_tf.data.parts import PARTS, parse_parts, short_name
from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.errors import ConfigError
from mura_tf.evaluators.metrics import study_level_metrics
from mura_tf.evaluators.routing import (
    confusion_frame,
    routable_mask,
    routed_frame,
    routing_metrics,
    study_votes,
    view_parts,
)
from mura_tf.files import disk_errors, load_for_inference
from mura_tf.runs.evaluators.study_metrics import metrics_with_intervals
from mura_tf.runs.folder import open_run
from mura_tf.runs.kinds import ABNORMALITY_SECTIONS
from mura_tf.runs.record import FinishedRun, read_run, write_run_config
from mura_tf.runs.result import RunResult, location_lines, test_metric_lines, write_results
from mura_tf.serving.export import IMAGES, films_to_pixels, serving_archive, write_archive
from mura_tf.serving.gradcam import grad_cam_of_films

RULE = (
    "each study goes to the part its views vote for (ties: the larger summed probability), "
    "then to that part's expert, or to the fallback for a part without one"
)


@dataclass(frozen=True)
class CascadePlan:
    """Which run does what: the router, and for each part it routes to, the expert."""

    router: FinishedRun
    experts: dict[str, FinishedRun]  # canonical part -> its own run or the fallback
    fallback: FinishedRun | None
    parts: tuple[str, ...]  # the parts the router chooses between, in PARTS order

    def members(self) -> list[FinishedRun]:
        """The distinct abnormality models, each once, in the order of their first part."""
        seen: dict[Path, FinishedRun] = {}
        for part in self.parts:
            seen.setdefault(self.experts[part].run_dir, self.experts[part])
        return list(seen.values())


def _run_parts(run: FinishedRun) -> tuple[str, ...]:
    return parse_parts(run.settings.get("part") or "all")


def plan_cascade(
    router_dir: str | os.PathLike[str],
    expert_dirs: Sequence[str | os.PathLike[str]],
    fallback_dir: str | os.PathLike[str] | None = None,
) -> CascadePlan:
    """Check the runs and assign an expert to every part the router chooses between.

    Raises:
        ConfigError: a run is not finished or not of its kind, two experts claim one part, the
            runs take different inputs, or a part has no expert and no fallback covers it.
    """
    router = read_run(router_dir)
    if router is None or router.section != "router":
        raise ConfigError(
            f"--router {router_dir} is not a finished body-part router run "
            "(python -m recipes.part_router)"
        )
    experts: dict[str, FinishedRun] = {}
    for run_dir in expert_dirs:
        run = read_run(run_dir)
        if run is None or run.section not in ABNORMALITY_SECTIONS:
            raise ConfigError(f"--experts {run_dir} is not a finished abnormality run")
        parts = _run_parts(run)
        if len(parts) != 1:
            raise ConfigError(
                f"--experts {run_dir} was trained on {', '.join(map(short_name, parts))}: an "
                "expert covers one part (give a run on every part as --fallback)"
            )
        if parts[0] in experts:
            raise ConfigError(
                f"two experts for {short_name(parts[0])}: {experts[parts[0]].run_dir} and "
                f"{run_dir}; give one"
            )
        experts[parts[0]] = run
    fallback = None
    if fallback_dir is not None:
        fallback = read_run(fallback_dir)
        if fallback is None or fallback.section not in ABNORMALITY_SECTIONS:
            raise ConfigError(f"--fallback {fallback_dir} is not a finished abnormality run")
    routed = _run_parts(router)
    for part in routed:
        if part in experts:
            continue
        if fallback is None:
            raise ConfigError(
                f"no model for {short_name(part)}: add a run trained on --part "
                f"{short_name(part)} to --experts, or give an all-parts run as --fallback"
            )
        if part not in _run_parts(fallback):
            raise ConfigError(
                f"--fallback {fallback_dir} was not trained on {short_name(part)}, which has no "
                "expert: give a fallback trained on every part"
            )
        experts[part] = fallback
    unused = sorted(set(experts) - set(routed))
    if unused:
        raise ConfigError(
            f"the router {router_dir} never routes to {', '.join(map(short_name, unused))}: "
            "leave those experts out, or train the router on their parts"
        )
    for run in experts.values():
        mismatch = run.input_mismatch(router)
        if mismatch:
            raise ConfigError(f"{mismatch} (the router): a cascade's models take the same input")
    return CascadePlan(router, experts, fallback, routed)


class PartCascade(keras.Model):
    """Raw pixels `[N, S, S, 3]` 0-255 -> the abnormality probability `[N, 1]` of each film from
    the expert of the part the router gives it."""

    def __init__(
        self,
        router: tuple[keras.Model, str],
        experts: Sequence[tuple[keras.Model, str]],
        expert_of_part: Sequence[int],
        routable: Sequence[bool],
        **kwargs,
    ):
        """`expert_of_part[i]`: the index in `experts` of `PARTS[i]`'s model (any index for a
        part the router never routes to, `routable[i]` False)."""
        super().__init__(**kwargs)
        self.router, self.router_normalization = router
        self.experts = [model for model, _ in experts]
        self.normalizations = [normalization for _, normalization in experts]
        self.expert_of_part = tuple(int(i) for i in expert_of_part)
        self.routable = tuple(bool(r) for r in routable)

    def part_probabilities(self, pixels: tf.Tensor) -> tf.Tensor:
        """float32 `[N, 7]`: the router's probability of each part."""
        return self.router(normalize(pixels, self.router_normalization), training=False)

    def route_views(self, probabilities: tf.Tensor) -> tf.Tensor:
        """int32 `[N]`: each film's most likely routable part (index into `PARTS`)."""
        return view_parts(probabilities, tf.constant(self.routable))

    def route_study(self, probabilities: tf.Tensor) -> tf.Tensor:
        """int32 scalar: the part the views of one study vote for."""
        ids = tf.zeros(tf.shape(probabilities)[:1], tf.int32)
        return study_votes(probabilities, ids, 1, tf.constant(self.routable))[0]

    def abnormality(self, pixels: tf.Tensor, parts: tf.Tensor) -> tf.Tensor:
        """float32 `[N, 1]`: each film scored by the expert of `parts` (int32 `[N]`)."""
        expert = tf.gather(tf.constant(self.expert_of_part, tf.int32), parts)
        n = len(self.experts)
        pieces = tf.dynamic_partition(pixels, expert, n)
        where = tf.dynamic_partition(tf.range(tf.shape(pixels)[0]), expert, n)
        outputs = [
            unless_empty(
                lambda x, m=model, nm=norm: tf.cast(
                    m(normalize(x, nm), training=False), tf.float32
                ),
                piece,
                tf.zeros([0, 1]),
            )
            for model, norm, piece in zip(self.experts, self.normalizations, pieces, strict=True)
        ]
        return tf.dynamic_stitch(where, outputs)

    def call(self, pixels, training=False):
        return self.abnormality(pixels, self.route_views(self.part_probabilities(pixels)))


def cascade_model(plan: CascadePlan) -> PartCascade:
    """The plan's runs loaded (`model.keras`) into one `PartCascade`, built."""

    def load(run: FinishedRun) -> tuple[keras.Model, str]:
        return load_for_inference(run.run_dir / "model.keras"), run.config["normalization"]

    members = plan.members()
    index = {run.run_dir: i for i, run in enumerate(members)}
    expert_of_part = [index[plan.experts[p].run_dir] if p in plan.experts else 0 for p in PARTS]
    model = PartCascade(
        load(plan.router), [load(run) for run in members], expert_of_part,
        routable_mask(plan.parts), name="mura_cascade",
    )  # fmt: skip
    size = plan.router.input_frame["image_size"]
    model(tf.zeros((1, size, size, 3)))
    return model


def cascade_archive(
    model: PartCascade, plan: CascadePlan, image_size: int, keep_aspect: bool
) -> keras.export.ExportArchive:
    """The cascade's SavedModel: a single run's signatures plus `serve_study_images` and
    `route_images` (module docstring). Its Grad-CAM is that of the expert each film goes to."""
    cams = [
        grad_cam_of_films(expert, norm, image_size, keep_aspect)
        for expert, norm in zip(model.experts, model.normalizations, strict=True)
    ]

    def routes(data: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = model.part_probabilities(films_to_pixels(data, image_size, keep_aspect))
        return {"part_probabilities": probabilities, "part": model.route_views(probabilities)}

    def cam_images(data: tf.Tensor) -> dict[str, tf.Tensor]:
        expert = tf.gather(tf.constant(model.expert_of_part, tf.int32), routes(data)["part"])
        n = len(cams)
        pieces = tf.dynamic_partition(data, expert, n)
        where = tf.dynamic_partition(tf.range(tf.shape(data)[0]), expert, n)
        empty = {
            "probability": tf.zeros([0, 1]),
            "cam": tf.zeros([0, image_size, image_size]),
            "content": tf.zeros([0, 4]),
        }
        outs = [unless_empty(cam, piece, empty) for cam, piece in zip(cams, pieces, strict=True)]
        return {key: tf.dynamic_stitch(where, [o[key] for o in outs]) for key in outs[0]}

    def study(data: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = films_to_pixels(data, image_size, keep_aspect)
        part = model.route_study(model.part_probabilities(pixels))
        parts = tf.fill(tf.shape(data), part)
        return {"probability": model.abnormality(pixels, parts), "part": part}

    archive = serving_archive(model, image_size, keep_aspect, cam_images)
    archive.add_endpoint("serve_study_images", study, input_signature=[IMAGES])
    archive.add_endpoint("route_images", routes, input_signature=[IMAGES])
    return archive


def _test_predictions(
    model: PartCascade, frame: pd.DataFrame, plan: CascadePlan, batch_size: int = 16
) -> pd.DataFrame:
    """The router's test films routed per study, each scored by its study's expert
    (`probability`) and, for comparison, by its true part's (`probability_true_part`)."""
    config = PipelineConfig(**plan.router.input_frame, normalization="raw")

    def batches():
        return make_dataset(frame, config, batch_size=batch_size)

    probabilities = np.concatenate(
        [model.part_probabilities(x).numpy() for x, _ in batches()], axis=0
    )
    routed = routed_frame(frame, probabilities, plan.parts)

    to_routed = routed["routed_part"].map(PARTS.index).to_numpy(np.int32)
    to_true = routed["part"].map(PARTS.index).to_numpy(np.int32)
    by_routed, by_true, start = [], [], 0
    for x, _ in batches():  # one more pass: each film decoded once for both scores
        rows = slice(start, start + int(x.shape[0]))
        start = rows.stop
        scored = model.abnormality(x, tf.constant(to_routed[rows])).numpy()[:, 0]
        by_routed.append(scored)
        if not np.array_equal(to_routed[rows], to_true[rows]):  # a study went elsewhere
            scored = model.abnormality(x, tf.constant(to_true[rows])).numpy()[:, 0]
        by_true.append(scored)
    return routed.assign(
        probability=np.concatenate(by_routed), probability_true_part=np.concatenate(by_true)
    )


def build_cascade(
    plan: CascadePlan, out_dir: str | os.PathLike[str], overwrite: bool = False
) -> RunResult:
    """Assemble, test and export the cascade of `plan` as the run folder `out_dir` (module
    docstring). The test films are the router's (MURA's valid split of its parts).

    Raises:
        ConfigError: `out_dir` holds a finished run and `overwrite` is false.
    """
    out = Path(out_dir)
    router = plan.router
    size, keep_aspect = router.input_frame["image_size"], router.input_frame["keep_aspect"]
    with open_run(out, overwrite), disk_errors(out):
        experts = {short_name(p): str(plan.experts[p].run_dir) for p in plan.parts}
        settings = {
            "recipe": "cascade",
            "router": str(router.run_dir),
            "experts": experts,
            "fallback": str(plan.fallback.run_dir) if plan.fallback else None,
            "rule": RULE,
            "part": router.settings.get("part"),
            "image_size": size,
            "keep_aspect": keep_aspect,
            "synthetic": any(r.settings.get("synthetic") for r in [router, *plan.members()]),
        }
        write_run_config(
            out, "cascade", settings, router.config.get("data_dir"), "Part-router cascade"
        )
        model = cascade_model(plan)
        frame = pd.read_csv(router.run_dir / "predictions.csv")
        frame = frame[["path", "part", "patient", "study", "label"]]
        predictions = _test_predictions(model, frame, plan)
        metrics = metrics_with_intervals(predictions, router.settings.get("seed", 0))
        metrics["router"] = routing_metrics(predictions)
        # The same experts, each study sent to its true part: what routing costs.
        metrics["true_part_routing"] = study_level_metrics(
            predictions.assign(probability=predictions["probability_true_part"])
        )
        metrics["experts"] = experts
        write_archive(cascade_archive(model, plan, size, keep_aspect), out / "export")
        write_results(out, metrics, predictions)
    return RunResult(out, metrics, predictions, settings)


def summary_lines(result: RunResult) -> list[str]:
    """What building a cascade prints: its test metrics, how many studies went to the wrong
    part, the router's confusion matrix and where everything went."""
    routing = result.metrics["router"]
    return [
        *test_metric_lines(
            "Part-router cascade, test metrics (study = mean of the views' probabilities)",
            result.metrics,
        ),
        "",
        f"routing: {routing['wrong_part_studies']} of {routing['studies']} test studies went "
        f"to the wrong part; views disagreed in {routing['views_disagreed_studies']}",
        confusion_frame(routing).to_string(),
        *location_lines(result.run_dir, ("SavedModel:", result.run_dir / "export")),
    ]
