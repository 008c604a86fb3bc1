"""Request batching as TF Serving's `--enable_batching` does it: the rows of concurrent
requests are merged into one model call of at most `max_batch_size` rows, the first row of a
batch waiting at most `batch_timeout_micros` for others to join it.

One thread calls the model, so calls never compete for the cores; a request larger than a
batch is cut into batches of its own. Should a merged call fail (a film the export cannot
decode), each request of it is run alone, so that only the request at fault gets the error.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# A model call: named input columns (first axis = rows) -> named output columns.
ModelCall = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's batching parameters of the same names.

    `max_batch_size`: rows per model call; `batch_timeout_micros`: how long the first row of a
    batch waits for more (0: a batch is whatever is queued when the model is free);
    `enabled`: merge concurrent requests (False: each request calls the model itself, still at
    most `max_batch_size` rows a call).
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 5000
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")


def split_rows(inputs: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    """`inputs` (`{name: [N, ...]}`) cut into consecutive pieces of at most `size` rows."""
    rows = len(next(iter(inputs.values())))
    if rows == 0:
        raise ValueError("no rows to score")
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, rows, size)]


def join_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The inverse of `split_rows`: each name's pieces concatenated in order."""
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def model_caller(call: ModelCall, options: BatchingOptions) -> ModelCall:
    """`call` behind a `Batcher` when `options.enabled`, else called in the request's own
    thread on at most `options.max_batch_size` rows at a time."""
    if options.enabled:
        return Batcher(call, options)
    return lambda inputs: join_rows(
        [call(part) for part in split_rows(inputs, options.max_batch_size)]
    )


@dataclass
class _Job:
    inputs: dict[str, np.ndarray]
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


class Batcher:
    """Runs `call` on the rows of concurrent requests merged into batches.

    `batcher(inputs)` blocks until the rows of `inputs` (`{name: [N, ...]}`) are scored and
    returns `{name: [N, ...]}`.
    """

    def __init__(
        self,
        call: ModelCall,
        options: BatchingOptions = BatchingOptions(),  # noqa: B008 - frozen
    ) -> None:
        self._call, self._options = call, options
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._held: _Job | None = None  # a job that did not fit the last batch
        threading.Thread(target=self._serve, name="mura-tf-batcher", daemon=True).start()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = [
            _Job(part, len(next(iter(part.values()))))
            for part in split_rows(inputs, self._options.max_batch_size)
        ]
        for job in jobs:
            self._queue.put(job)
        for job in jobs:
            job.done.wait()
            if job.error is not None:
                raise job.error
        return join_rows([job.outputs for job in jobs])

    def _next_batch(self) -> list[_Job]:
        first = self._held or self._queue.get()
        self._held = None
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self._options.batch_timeout_micros / 1e6
        while rows < self._options.max_batch_size:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if rows + job.rows > self._options.max_batch_size:
                self._held = job
                break
            batch.append(job)
            rows += job.rows
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._run(batch)
            except Exception:  # one merged call failed: find the request at fault
                for job in batch:
                    try:
                        self._run([job])
                    except Exception as e:  # noqa: BLE001 - handed to the request's thread
                        job.error = e
            for job in batch:
                job.done.set()

    def _run(self, batch: list[_Job]) -> None:
        outputs = self._call(join_rows([job.inputs for job in batch]))
        start = 0
        for job in batch:
            job.outputs = {k: v[start : start + job.rows] for k, v in outputs.items()}
            start += job.rows
