"""How this sample was cut from the full FracAtlas folder (kept for the record; it reads a
FracAtlas download and writes this folder). Run: python samples/fracatlas/select_sample.py
--source ../shared/data/fracatlas

Films are copied byte for byte (EXIF kept); the CSVs and annotation files keep only the chosen
films' rows and entries, otherwise unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
from PIL import Image

PARTS = ("hand", "leg", "hip", "shoulder", "mixed")
# Two films the release contradicts itself on, kept so the reader's warnings are tested: a
# film in Fractured/ that dataset.csv calls not fractured, and an EXIF-rotated film whose
# annotations give the displayed size, not the stored one.
QUIRKS = ("IMG0003298.jpg", "IMG0002628.jpg")


def choose(source: Path) -> list[str]:
    table = pd.read_csv(source / "dataset.csv")
    folder = {p.name: p.parent.name for p in (source / "images").glob("*/*.jpg")}
    info = []
    for name in table["image_id"]:
        path = source / "images" / folder[name] / name
        with Image.open(path) as im:
            info.append((im.mode, im.getexif().get(0x0112) or 1, path.stat().st_size))
    table[["mode", "orientation", "bytes"]] = pd.DataFrame(info)
    table["part"] = [
        "mixed" if r.mixed else next(p for p in PARTS if getattr(r, p)) for r in table.itertuples()
    ]
    table["fractured"] = [int(folder[n] == "Fractured") for n in table["image_id"]]
    split = {
        n: s
        for s in ("train", "valid", "test")
        for n in pd.read_csv(source / "Utilities" / "Fracture Split" / f"{s}.csv")["image_id"]
    }
    table["split"] = table["image_id"].map(split).fillna("")
    table = table.sort_values(["bytes", "image_id"])
    chosen: list[str] = list(QUIRKS)
    # Every part x label x mode, the smallest films first.
    for (_part, _label, _mode), group in table.groupby(["part", "fractured", "mode"]):
        chosen += list(group["image_id"][:2])
    # Every published split of the fractured films, per part where it has them.
    for (_part, _split), group in table[table["fractured"] == 1].groupby(["part", "split"]):
        chosen += list(group["image_id"][:1])
    # EXIF-rotated films of every orientation, both labels.
    for (_o, _label), group in table[table["orientation"] != 1].groupby(
        ["orientation", "fractured"]
    ):
        chosen += list(group["image_id"][:1])
    # Films with three or more fractures, and with metal hardware.
    chosen += list(table[table["fracture_count"] >= 3]["image_id"][:3])
    chosen += list(table[(table["hardware"] == 1)].groupby("fractured")["image_id"].first())
    return sorted(dict.fromkeys(chosen))


def write(source: Path, target: Path, names: list[str]) -> None:
    keep = set(names)
    table = pd.read_csv(source / "dataset.csv", dtype=str)
    (target / "images").mkdir(parents=True, exist_ok=True)
    for path in sorted((source / "images").glob("*/*.jpg")):
        if path.name in keep:
            (target / "images" / path.parent.name).mkdir(exist_ok=True)
            shutil.copy2(path, target / "images" / path.parent.name / path.name)
    table[table["image_id"].isin(keep)].to_csv(target / "dataset.csv", index=False)
    splits = target / "Utilities" / "Fracture Split"
    splits.mkdir(parents=True, exist_ok=True)
    for s in ("train", "valid", "test"):
        rows = pd.read_csv(source / "Utilities" / "Fracture Split" / f"{s}.csv", dtype=str)
        rows[rows["image_id"].isin(keep)].to_csv(splits / f"{s}.csv", index=False)
    notes = source / "Annotations"
    out = target / "Annotations"
    coco = json.loads((notes / "COCO JSON" / "COCO_fracture_masks.json").read_text())
    images = [i for i in coco["images"] if i["file_name"] in keep]
    ids = {i["id"] for i in images}
    coco["images"] = images
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    (out / "COCO JSON").mkdir(parents=True, exist_ok=True)
    (out / "COCO JSON" / "COCO_fracture_masks.json").write_text(json.dumps(coco))
    vgg_dir = notes / "VGG JSON"
    for vgg_file in sorted(vgg_dir.glob("*.json")):
        vgg = json.loads(vgg_file.read_text())
        kept = {k: v for k, v in vgg.items() if v.get("filename") in keep}
        (out / "VGG JSON").mkdir(parents=True, exist_ok=True)
        (out / "VGG JSON" / vgg_file.name).write_text(json.dumps(kept))
    for folder, suffix in (("PASCAL VOC", ".xml"), ("YOLO", ".txt")):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            src = notes / folder / (Path(name).stem + suffix)
            if src.is_file():
                shutil.copy2(src, out / folder / src.name)
    labels = notes / "YOLO" / "labels.txt"
    if labels.is_file():
        shutil.copy2(labels, out / "YOLO" / "labels.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a FracAtlas folder")
    parser.add_argument("--target", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    names = choose(args.source)
    write(args.source, args.target, names)
    print(f"{len(names)} films written to {args.target}")


if __name__ == "__main__":
    main()
