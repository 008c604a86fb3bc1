"""How large a film the project decodes.

A PNG of 20,000 x 20,000 zeros is 380 KB on disk and 400 MB decoded; a 335-byte JPEG can claim
65,500 x 65,500 in its header. Every reader checks a film's size from its header (Pillow's
`Image.open`, a DICOM file's Rows and Columns) against `MAX_FILM_PIXELS` before decoding a
pixel, and refuses a larger one with one line, as it refuses a damaged film. Radiographs are
far below the limit: MURA's films are at most 512 px a side, FracAtlas's about 2,300 x 2,900,
a full-field digital radiograph about 4,300 x 3,500 (15 megapixels).
"""

from __future__ import annotations

import re

MAX_FILM_PIXELS = 50_000_000


def size_problem(width: int, height: int, max_pixels: int = MAX_FILM_PIXELS) -> str | None:
    """Why a film of `width` x `height` is too large to decode, or None."""
    if width <= 0 or height <= 0:
        return f"{width} x {height} pixels: not a film"
    if width * height > max_pixels:
        return f"{width:,} x {height:,} pixels, over the limit of {max_pixels / 1e6:g} megapixels"
    return None


def bomb_problem(error: Exception, max_pixels: int = MAX_FILM_PIXELS) -> str:
    """The one line for Pillow's `DecompressionBombError` (a header far over Pillow's own
    limit, raised before the size can be read from the image)."""
    claimed = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(claimed[1]):,} pixels" if claimed else "more pixels than Pillow allows"
    return f"its header claims {size}, over the limit of {max_pixels / 1e6:g} megapixels"
