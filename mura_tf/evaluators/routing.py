"""The routing maths of a body-part router, with no training in it: each view's most likely
part (`view_parts`), each study's vote (`study_votes`; a MURA study holds one part, so a study
goes to the majority of its views' parts, a tie to the larger summed probability), and how well
views and studies were routed (`routing_metrics`, `confusion_frame`). The router run
(`mura_tf.runs.router`) and the cascade (`mura_tf.runs.cascade`, whose export calls the TF ops
in its graph) both use them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.data.datasets import dataset_of_parts, short_name
from mura_tf.evaluators.metrics import macro_f1


def view_parts(probabilities: tf.Tensor, routable: tf.Tensor) -> tf.Tensor:
    """int32 `[V]`: each view's most likely routable part (index into the dataset's parts,
    `DatasetInfo.parts`).

    Args:
        probabilities: float `[V, P]`, the router's part probabilities.
        routable: bool `[P]`, the parts a view may be routed to (the router's parts).
    """
    probabilities = tf.convert_to_tensor(probabilities, tf.float32)
    masked = tf.where(tf.convert_to_tensor(routable)[tf.newaxis], probabilities, -1.0)
    return tf.cast(tf.argmax(masked, axis=-1), tf.int32)


def study_votes(
    probabilities: tf.Tensor, study_ids: tf.Tensor, n_studies: int | tf.Tensor, routable: tf.Tensor
) -> tf.Tensor:
    """The part of each study: the majority of its views' most likely parts.

    Args:
        probabilities: float `[V, P]`, the router's part probabilities of every view.
        study_ids: int32 `[V]`, each view's study, in `[0, n_studies)`.
        routable: bool `[P]`, the parts a view may be routed to (the router's parts).
    Returns:
        int32 `[n_studies]`, an index into the dataset's parts. Ties between parts with as many
        views go to the one of larger summed probability.
    """
    probabilities = tf.convert_to_tensor(probabilities, tf.float32)
    routable = tf.convert_to_tensor(routable)
    views = tf.one_hot(view_parts(probabilities, routable), tf.shape(probabilities)[-1])
    counts = tf.math.unsorted_segment_sum(views, study_ids, n_studies)
    summed = tf.math.unsorted_segment_sum(probabilities, study_ids, n_studies)
    n_views = tf.reduce_sum(counts, axis=-1, keepdims=True)
    # Summed probability / views is at most 1, so it only breaks ties between equal counts.
    score = counts + 0.5 * summed / tf.maximum(n_views, 1.0)
    score = tf.where(routable[tf.newaxis], score, -1.0)
    return tf.cast(tf.argmax(score, axis=-1), tf.int32)


def routable_mask(parts: tuple[str, ...]) -> np.ndarray:
    """bool `[P]` over the parts of `parts`' dataset: True for the parts in `parts`."""
    return np.array([part in parts for part in dataset_of_parts(parts).parts])


def routed_frame(
    frame: pd.DataFrame, probabilities: np.ndarray, parts: tuple[str, ...]
) -> pd.DataFrame:
    """`frame` (test films with `study`) plus `view_part` (each view's own most likely part),
    `routed_part` (its study's vote) and `p_<part>` (the router's probabilities `[V, P]`)."""
    every = dataset_of_parts(parts).parts
    routable = routable_mask(parts)
    codes, uniques = pd.factorize(frame["study"])
    votes = study_votes(probabilities, codes.astype(np.int32), len(uniques), routable).numpy()
    out = frame.assign(
        view_part=[every[i] for i in view_parts(probabilities, routable).numpy()],
        routed_part=[every[votes[c]] for c in codes],
    )
    for i, part in enumerate(every):
        out[f"p_{short_name(part)}"] = probabilities[:, i]
    return out


def routing_metrics(routed: pd.DataFrame) -> dict:
    """How well views and studies were routed (`routed_frame`'s columns; `part` is the truth).

    `image`: accuracy and macro F1 of each view's own part; `study`: accuracy of the studies'
    votes; `confusion`: study counts, rows the true part, columns the routed one (`parts`
    order); `wrong_part_studies`, `studies`, `views_disagreed_studies` (studies whose views
    were not all given one part).
    """
    studies = routed.groupby("study", sort=False).agg(
        part=("part", "first"), routed_part=("routed_part", "first"), kinds=("view_part", "nunique")
    )
    seen = set(routed["part"]) | set(routed["routed_part"])
    parts = [p for p in dataset_of_parts(seen).parts if p in seen]
    confusion = pd.crosstab(studies["part"], studies["routed_part"]).reindex(
        index=parts, columns=parts, fill_value=0
    )
    wrong = int((studies["part"] != studies["routed_part"]).sum())
    return {
        "image": {
            "accuracy": float((routed["part"] == routed["view_part"]).mean()),
            "macro_f1": macro_f1(routed["part"], routed["view_part"]),
            "n": int(len(routed)),
        },
        "study": {
            "accuracy": float(1 - wrong / max(len(studies), 1)),
            "macro_f1": macro_f1(studies["part"], studies["routed_part"]),
            "n": int(len(studies)),
        },
        "parts": parts,
        "confusion": confusion.to_numpy().tolist(),
        "wrong_part_studies": wrong,
        "studies": int(len(studies)),
        "views_disagreed_studies": int((studies["kinds"] > 1).sum()),
    }


def confusion_frame(routing: dict) -> pd.DataFrame:
    """`routing_metrics`' confusion matrix with short part names (rows true, columns routed)."""
    names = [short_name(p) for p in routing["parts"]]
    return pd.DataFrame(
        routing["confusion"],
        index=pd.Index(names, name="true part"),
        columns=pd.Index(names, name="routed to"),
    )
