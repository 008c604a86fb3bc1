"""What the run says about its own training: earlier stages' metrics (the body-part stage),
the epoch handed over and why, and a fingerprint of the first training batch (equal
fingerprints: the same films, augmented the same way)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mura_tf.runs.evaluators.trained import TrainedRun


@dataclass(frozen=True)
class TrainingRecord:
    """`extra`, `selected_epoch` and `first_batch_sha1`."""

    def __call__(self, run: TrainedRun) -> dict:
        return {
            **run.extra,
            "selected_epoch": run.selection,
            "first_batch_sha1": hashlib.sha1(run.first_batch.tobytes()).hexdigest(),
        }
