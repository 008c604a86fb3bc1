"""Counts of images, studies and patients per split, part and label (the reports' tables)."""

from __future__ import annotations

import pandas as pd

from mura_tf.data.datasets import dataset_of_parts, short_name

SUMMARY_KEYS = (
    "images",
    "studies",
    "patients",
    "normal_images",
    "abnormal_images",
    "normal_studies",
    "abnormal_studies",
)


def summarize(frame: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """`{split: {part: {images, studies, patients, normal_images, ...}}}` with int counts.

    Every part present in a split is a key of that split.
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    dataset = dataset_of_parts(frame["part"].unique())
    order = [s for s in dataset.catalogue_splits if s in set(frame["split"])]
    for split in order + sorted(set(frame["split"]) - set(order)):
        rows = frame[frame["split"] == split]
        out[str(split)] = {}
        for part in [p for p in dataset.parts if p in set(rows["part"])]:
            g = rows[rows["part"] == part]
            studies = g.drop_duplicates("study")
            out[str(split)][part] = {
                "images": int(len(g)),
                "studies": int(len(studies)),
                "patients": int(g["patient"].nunique()),
                "normal_images": int((g["label"] == 0).sum()),
                "abnormal_images": int((g["label"] == 1).sum()),
                "normal_studies": int((studies["label"] == 0).sum()),
                "abnormal_studies": int((studies["label"] == 1).sum()),
            }
    return out


def count_table(summary: dict[str, dict[str, int]], unit: str = "studies") -> pd.DataFrame:
    """Part / Normal / Abnormal / Total for one split of `summarize`, with a Total row; the
    label columns are named as the dataset names its labels (FracAtlas: Not fractured /
    Fractured).

    Args:
        summary: `summarize(frame)[split]`.
        unit: `studies` or `images`.
    """
    dataset = dataset_of_parts(summary)
    negative, positive = dataset.negative.capitalize(), dataset.positive.capitalize()
    rows = [
        {
            "Part": short_name(part).capitalize(),
            negative: c[f"normal_{unit}"],
            positive: c[f"abnormal_{unit}"],
            "Total": c[unit],
        }
        for part, c in summary.items()
    ]
    table = pd.DataFrame(rows, columns=["Part", negative, positive, "Total"])
    total = table[[negative, positive, "Total"]].sum()
    table.loc[len(table)] = ["Total", *total.tolist()]
    return table
