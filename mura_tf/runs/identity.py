"""Which run folder a run is: `OUT/<recipe>/<parts>/<seed and hash of the settings>/`.

The same command finds the same folder, so it resumes an interrupted run and never trains a
finished one again. Two rules keep old folders' names as the project grows:

- what does not change what a run computes (where it runs, on how many devices, its name and
  notes) is not a setting (`NOT_SETTINGS`);
- a setting added after runs existed is declared with `setting(..., since=VERSION)` (and
  `legacy=` the value runs of that time had, when it is not the new default): at that value
  it stays out of the hash (`later_settings`). A kind that gained an inherited setting later
  than the others redeclares the field with its own `since`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mura_tf.data.datasets import MURA, dataset_of_parts, short_name

# Where and on how many devices a run happens does not change what it computes (so a run
# interrupted on one machine resumes from its folder on another), and neither do its name,
# notes and table label, nor whether it is one of several seeds averaged (`--ensemble`): none
# of them is part of the settings that name the run.
NOT_SETTINGS = frozenset(
    {"out", "run_name", "overwrite", "strict", "notes", "strategy", "label", "ensemble"}
)


def later_settings(config_type: type) -> dict[str, Any]:
    """Field name -> the value runs had before the setting existed, for every setting of
    `config_type` declared with `since`."""
    return {
        f.name: f.metadata["legacy"]
        for f in dataclasses.fields(config_type)
        if "since" in f.metadata
    }


def identity(settings: dict, later: dict[str, Any]) -> dict:
    """`settings` without the `later` settings left at their old value: what the folder's
    name hashes."""
    return {k: v for k, v in settings.items() if k not in later or v != later[k]}


def run_folder(
    out: str,
    recipe: str,
    parts: Sequence[str],
    settings: dict,
    seed: int,
    run_name: str | None = None,
) -> Path:
    """`out/<recipe>/<parts>/<run>`; the default run name is the seed and a hash of `settings`,
    stable for the same settings, so the same command finds and resumes its run."""
    dataset = dataset_of_parts(parts)
    part_dir = "all" if set(parts) == set(dataset.parts) else "+".join(map(short_name, parts))
    if dataset is not MURA:  # MURA's folders keep the names they had before other datasets
        part_dir = f"{dataset.name}-{part_dir}"
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return Path(out) / recipe / part_dir / (run_name or f"seed{seed}-{digest[:8]}")
