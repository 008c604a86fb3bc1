"""A synthetic MURA: the official layout and CSVs, radiograph-like images, a learnable signal.

MURA itself needs registration and cannot be downloaded by code, so every test and the quick
start run on this. It keeps what matters to the code paths: patients with several studies (and a
few patients imaged at two body parts), 1-5 views per study, PNGs in the modes MURA mixes (L,
RGB, and a few LA, RGBA and 16-bit), a few hundred pixels a side, and MURA's share of abnormal
studies per part. Each part has its own bone geometry, so the body-part task is learnable;
abnormal studies show metal hardware or a fracture line in at least one view, and
`lesions.csv` records the box around each one (to check where a model looks,
`mura_tf.serving.gradcam`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mura_tf.data.datasets import MURA
from mura_tf.errors import ConfigError, MuraDataError
from mura_tf.files import exclusive_lock

# Share of abnormal studies per part in MURA-v1.1's train split (Rajpurkar et al., table 1).
ABNORMAL_SHARE = {
    "XR_ELBOW": 0.38,
    "XR_FINGER": 0.34,
    "XR_FOREARM": 0.33,
    "XR_HAND": 0.26,
    "XR_HUMERUS": 0.46,
    "XR_SHOULDER": 0.52,
    "XR_WRIST": 0.38,
}
VIEWS_PER_STUDY = ((1, 2, 3, 4, 5), (0.08, 0.35, 0.4, 0.12, 0.05))
# Where each abnormal view's lesion was drawn: path (as in the CSVs), kind, box in pixels.
LESIONS_FILE = "lesions.csv"
STUDIES_PER_PATIENT = ((1, 2, 3), (0.8, 0.15, 0.05))
PNG_MODES = (("L", "RGB", "LA", "RGBA", "I;16"), (0.7, 0.15, 0.05, 0.05, 0.05))


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and randomness of a synthetic MURA."""

    patients_per_part: int = 16
    valid_patients_per_part: int = 6
    min_side: int = 160
    max_side: int = 320
    parts: tuple[str, ...] = MURA.parts
    cross_part_share: float = 0.1  # patients with a study of a second body part
    lesion_view_share: float = 0.85  # views of an abnormal study that show the lesion
    seed: int = 0

    def __post_init__(self) -> None:
        if self.patients_per_part < 2 or self.valid_patients_per_part < 1:
            raise ConfigError("need at least 2 train and 1 valid patient per part")
        if not 32 <= self.min_side <= self.max_side:
            raise ConfigError(
                f"image sides must satisfy 32 <= min <= max, got {self.min_side}, {self.max_side}"
            )
        object.__setattr__(self, "parts", MURA.parse_parts(self.parts))


# --- drawing ---------------------------------------------------------------------------------


def _bone(draw: ImageDraw.ImageDraw, p0, p1, width: float, shade: int) -> None:
    """A long bone from p0 to p1 (pixels) with rounded, wider ends."""
    (x0, y0), (x1, y1) = p0, p1
    draw.line([p0, p1], fill=shade, width=max(1, int(width)))
    for x, y in ((x0, y0), (x1, y1)):
        r = width * 0.75
        draw.ellipse([x - r, y - r, x + r, y + r], fill=min(255, shade + 15))


def _draw_part(draw, part: str, w: int, h: int, rng: np.random.Generator) -> list[tuple]:
    """Draw one body part; returns the bone segments (p0, p1, width) lesions can sit on."""
    s = min(w, h)
    shade = int(rng.integers(100, 150))
    jitter = lambda v: v * (1 + rng.uniform(-0.08, 0.08))  # noqa: E731
    bones: list[tuple] = []

    def add(p0, p1, width):
        p0 = (jitter(p0[0]) * w, jitter(p0[1]) * h)
        p1 = (jitter(p1[0]) * w, jitter(p1[1]) * h)
        width = width * s
        _bone(draw, p0, p1, width, shade)
        bones.append((p0, p1, width))

    if part == "XR_HUMERUS":
        add((0.5, 0.08), (0.5, 0.92), 0.16)
    elif part == "XR_FOREARM":
        add((0.4, 0.06), (0.42, 0.94), 0.07)
        add((0.6, 0.06), (0.58, 0.94), 0.08)
    elif part == "XR_ELBOW":
        add((0.5, 0.05), (0.5, 0.5), 0.13)
        add((0.5, 0.5), (0.3, 0.95), 0.07)
        add((0.52, 0.5), (0.7, 0.95), 0.07)
        r = 0.1 * s
        draw.ellipse([0.5 * w - r, 0.5 * h - r, 0.5 * w + r, 0.5 * h + r], fill=shade)
    elif part == "XR_SHOULDER":
        r = 0.17 * s
        cx, cy = 0.4 * w, 0.35 * h
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=shade)
        add((0.42, 0.4), (0.48, 0.95), 0.13)
        draw.arc([0.1 * w, -0.2 * h, 1.1 * w, 0.5 * h], 20, 160, fill=shade, width=int(0.05 * s))
    elif part == "XR_HAND":
        for i in range(5):
            x = 0.25 + 0.125 * i
            add((0.5, 0.9), (x, 0.45), 0.045)
            add((x, 0.42), (x + (x - 0.5) * 0.3, 0.08), 0.035)
    elif part == "XR_FINGER":
        x = 0.5
        for y0, y1 in ((0.95, 0.65), (0.62, 0.38), (0.35, 0.12)):
            add((x, y0), (x, y1), 0.1)
    elif part == "XR_WRIST":
        add((0.4, 0.98), (0.42, 0.62), 0.08)
        add((0.6, 0.98), (0.58, 0.62), 0.09)
        for i in range(7):
            cx = (0.32 + 0.06 * i + rng.uniform(-0.02, 0.02)) * w
            cy = (0.5 + 0.05 * (i % 2) + rng.uniform(-0.02, 0.02)) * h
            r = rng.uniform(0.035, 0.05) * s
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=shade)
        for i in range(4):
            add((0.35 + 0.1 * i, 0.38), (0.33 + 0.12 * i, 0.05), 0.04)
    else:  # pragma: no cover - parts are validated by the config
        raise ConfigError(f"unknown part {part}")
    return bones


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def _draw_lesion(draw, metal, bones, kind: str, s: int, rng: np.random.Generator) -> Box:
    """Metal hardware (a saturated plate with screws) or a displaced fracture line on a bone;
    returns the box around what was drawn."""
    p0, p1, width = bones[int(rng.integers(len(bones)))]
    t = rng.uniform(0.3, 0.7)
    cx, cy = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    norm = max(np.hypot(dx, dy), 1e-6)
    ux, uy = dx / norm, dy / norm  # along the bone
    if kind == "hardware":
        half = min(0.45 * norm, rng.uniform(0.15, 0.25) * s)
        plate_w = max(3, int(0.06 * s))
        metal.line(
            [(cx - ux * half, cy - uy * half), (cx + ux * half, cy + uy * half)],
            fill=255,
            width=plate_w,
        )
        for k in np.linspace(-0.8, 0.8, 4):
            sx, sy = cx + ux * half * k, cy + uy * half * k
            r = plate_w * 0.9
            metal.ellipse([sx - r, sy - r, sx + r, sy + r], fill=255)
        ends = [(cx - ux * half, cy - uy * half), (cx + ux * half, cy + uy * half)]
        margin = plate_w * 0.9
    else:
        # A clean break across the bone: a dark band a few percent of the image wide.
        half = width * 1.5
        gap = max(3, int(0.06 * s))
        tilt = rng.uniform(-0.3, 0.3)
        ends = [
            (cx - (uy + ux * tilt) * half * f, cy + (ux - uy * tilt) * half * f) for f in (-1, 1)
        ]
        draw.line(ends, fill=int(rng.integers(0, 20)), width=gap)
        margin = gap / 2
    xs, ys = [x for x, _ in ends], [y for _, y in ends]
    return min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin


def _rotated_box(box: Box, angle: float, w: int, h: int) -> Box:
    """The box around `box` after `Image.rotate(angle)` (counter-clockwise about the centre),
    clipped to the image."""
    t = np.radians(angle)
    cx, cy = w / 2, h / 2
    corners = [(x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
    xs = [cx + (x - cx) * np.cos(t) + (y - cy) * np.sin(t) for x, y in corners]
    ys = [cy - (x - cx) * np.sin(t) + (y - cy) * np.cos(t) for x, y in corners]
    return (max(0.0, min(xs)), max(0.0, min(ys)), min(float(w), max(xs)), min(float(h), max(ys)))


def render_film(
    part: str, lesion: str | None, w: int, h: int, rng: np.random.Generator
) -> tuple[np.ndarray, Box | None]:
    """One synthetic radiograph and where its lesion is.

    Args:
        part: canonical part name (`XR_ELBOW` ...).
        lesion: None, `hardware` or `fracture`.
        w: width in pixels.
        h: height in pixels.
    Returns:
        uint8 `[h, w]` grayscale image (dark background, bright bones) and the box
        (x0, y0, x1, y1 in pixels) around the lesion, None without one.
    """
    canvas = Image.new("L", (w, h), 0)
    # Metal is drawn on its own layer so that it stays the brightest thing after exposure
    # changes, as it does on a real film.
    metal_layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    bones = _draw_part(draw, part, w, h, rng)
    box = None
    if lesion:
        box = _draw_lesion(draw, ImageDraw.Draw(metal_layer), bones, lesion, min(w, h), rng)
    # A side marker (the "L"/"R" letter plate) in a random corner, in both classes.
    m = int(0.06 * min(w, h))
    mx = int(rng.choice([0.04 * w, 0.9 * w]))
    my = int(rng.choice([0.04 * h, 0.9 * h]))
    draw.rectangle([mx, my, mx + m, my + m], fill=int(rng.integers(90, 160)))
    angle = rng.uniform(-20, 20)
    blur = ImageFilter.GaussianBlur(radius=max(0.5, 0.006 * min(w, h)))
    canvas = canvas.rotate(angle, resample=Image.BILINEAR, fillcolor=0).filter(blur)
    metal = np.asarray(metal_layer.rotate(angle, resample=Image.BILINEAR).filter(blur), np.float32)
    x = np.asarray(canvas, dtype=np.float32)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    # Background, exposure gradient and contrast keep tissue below about 210, under the metal.
    x = x + rng.uniform(10, 35) + rng.uniform(-10, 10) * yy
    x = x * rng.uniform(0.7, 1.0) + rng.normal(0, rng.uniform(2, 6), size=x.shape)
    x = np.maximum(x, metal * rng.uniform(0.92, 1.0))
    return np.clip(x, 0, 255).astype(np.uint8), box and _rotated_box(box, angle, w, h)


def _encode(gray: np.ndarray, mode: str) -> Image.Image:
    if mode == "L":
        return Image.fromarray(gray, "L")
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)  # mode I;16
    if mode == "LA":
        return Image.merge(
            "LA", [Image.fromarray(gray, "L"), Image.new("L", gray.shape[::-1], 255)]
        )
    rgb = Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")
    return rgb if mode == "RGB" else rgb.convert("RGBA")


# --- layout ----------------------------------------------------------------------------------


def _plan(config: SyntheticConfig, rng: np.random.Generator) -> list[dict]:
    """Every study to write: split, part, patient number, study number, label, views."""
    parts = config.parts
    studies: list[dict] = []
    patient = 0
    for split, count in (
        ("train", config.patients_per_part),
        ("valid", config.valid_patients_per_part),
    ):
        for part in parts:
            for _ in range(count):
                patient += 1
                visits = [part] * int(rng.choice(STUDIES_PER_PATIENT[0], p=STUDIES_PER_PATIENT[1]))
                if len(parts) > 1 and rng.random() < config.cross_part_share:
                    visits.append(str(rng.choice([p for p in parts if p != part])))
                numbers: dict[str, int] = {}
                for visit in visits:
                    numbers[visit] = numbers.get(visit, 0) + 1
                    studies.append(
                        {
                            "split": split,
                            "part": visit,
                            "patient": f"patient{patient:05d}",
                            "number": numbers[visit],
                            "label": 0,
                            "views": int(rng.choice(VIEWS_PER_STUDY[0], p=VIEWS_PER_STUDY[1])),
                        }
                    )
    # Labels per (split, part) at MURA's share, with at least one study of each label, so that
    # even a tiny set can be split, evaluated and fine-tuned on every part.
    groups: dict[tuple[str, str], list[dict]] = {}
    for study in studies:
        groups.setdefault((study["split"], study["part"]), []).append(study)
    for (_, part), group in sorted(groups.items()):
        k = min(max(round(ABNORMAL_SHARE[part] * len(group)), 1), max(len(group) - 1, 1))
        for i in rng.permutation(len(group))[:k]:
            group[int(i)]["label"] = 1
    return studies


def generate_synthetic(
    out_dir: str | os.PathLike[str],
    config: SyntheticConfig | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic `MURA-v1.1/` folder (images and the four CSVs) under `out_dir`.

    The folder is built under a temporary name and renamed into place, so an interrupted run
    never leaves a half-written dataset.

    Returns:
        The path of the new `MURA-v1.1` folder.
    """
    config = config or SyntheticConfig()
    out = Path(out_dir).expanduser()
    final = out / "MURA-v1.1"
    if final.exists() and not overwrite:
        raise MuraDataError(f"{final} already exists: choose another --out or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".MURA-v1.1.tmp-", dir=out))
    except OSError as e:
        raise MuraDataError(f"cannot write to {out}: {e.strerror}") from None
    rng = np.random.default_rng(config.seed)
    studies = _plan(config, rng)
    csv_rows: dict[str, list[str]] = {
        f"{s}_{k}": [] for s in ("train", "valid") for k in ("image_paths", "labeled_studies")
    }
    lesions = ["path,kind,x0,y0,x1,y1"]
    try:
        for i, study in enumerate(studies, 1):
            suffix = "positive" if study["label"] else "negative"
            name = f"study{study['number']}_{suffix}"
            rel = f"{study['split']}/{study['part']}/{study['patient']}/{name}"
            folder = tmp / rel
            folder.mkdir(parents=True, exist_ok=True)
            lesion_views = set()
            if study["label"]:
                lesion_views = {
                    v for v in range(study["views"]) if rng.random() < config.lesion_view_share
                }
                lesion_views = lesion_views or {int(rng.integers(study["views"]))}
            kind = str(rng.choice(["hardware", "fracture"], p=[0.6, 0.4]))
            for v in range(study["views"]):
                w, h = (int(rng.integers(config.min_side, config.max_side + 1)) for _ in range(2))
                lesion = kind if v in lesion_views else None
                gray, box = render_film(study["part"], lesion, w, h, rng)
                mode = str(rng.choice(PNG_MODES[0], p=PNG_MODES[1]))
                _encode(gray, mode).save(folder / f"image{v + 1}.png")
                path = f"MURA-v1.1/{rel}/image{v + 1}.png"
                csv_rows[f"{study['split']}_image_paths"].append(path)
                if box is not None:
                    lesions.append(f"{path},{lesion}," + ",".join(f"{c:.1f}" for c in box))
            csv_rows[f"{study['split']}_labeled_studies"].append(
                f"MURA-v1.1/{rel}/,{study['label']}"
            )
            if progress:
                progress(i, len(studies))
        for name, rows in csv_rows.items():
            (tmp / f"{name}.csv").write_text("\n".join(rows) + "\n")
        (tmp / LESIONS_FILE).write_text("\n".join(lesions) + "\n")
        (tmp / "SYNTHETIC.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
        if final.exists():
            old = out / f".MURA-v1.1.old-{os.getpid()}"
            final.rename(old)
            shutil.rmtree(old)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def cache_root() -> Path:
    """Where generated data is kept: `$MURA_TF_CACHE` or `~/.cache/mura_tf`."""
    return Path(os.environ.get("MURA_TF_CACHE", Path.home() / ".cache" / "mura_tf")).expanduser()


def synthetic_dataset(
    config: SyntheticConfig | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The embedded synthetic set for `config`: generated once, then reused from the cache.

    Returns:
        The folder that contains `MURA-v1.1/` (pass it as `data_dir`).
    """
    config = config or SyntheticConfig()
    key = hashlib.sha1(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir else cache_root() / f"synthetic-{key}"
    if not (folder / "MURA-v1.1").is_dir():
        # Several commands may start at once on a fresh cache: one generates, the others wait
        # for it and then use its folder (never replace it under a reader).
        with exclusive_lock(folder.with_name(f".{folder.name}.lock"), str(folder), wait=True):
            if not (folder / "MURA-v1.1").is_dir():
                generate_synthetic(folder, config)
    return folder
