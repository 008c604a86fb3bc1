"""Request batching (`mura_tf.serving.batching`): concurrent requests merged into model calls of
at most `max_batch_size` rows, each request getting its own rows back, and only the request at
fault getting an error."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mura_tf.serving.batching import Batcher, BatchingOptions, model_caller


class Model:
    """Doubles its input; slow enough that requests queue up while it runs; refuses a batch
    holding a negative row, as an export refuses a film it cannot decode."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = columns["x"]
        with self.lock:
            self.calls.append(len(x))
        time.sleep(0.05)
        if (x < 0).any():
            raise ValueError("a negative row")
        return {"y": x * 2, "z": x + 0.5}


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows():
    model = Model()
    batcher = Batcher(model, BatchingOptions(max_batch_size=8, batch_timeout_micros=20_000))

    def request(k: int) -> dict[str, np.ndarray]:
        return batcher({"x": np.array([k, k + 100], np.float32)})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(request, range(16)))
    for k, answer in enumerate(answers):
        np.testing.assert_array_equal(answer["y"], [2 * k, 2 * k + 200])
        np.testing.assert_array_equal(answer["z"], [k + 0.5, k + 100.5])
    assert sum(model.calls) == 32 and max(model.calls) <= 8
    assert len(model.calls) < 16  # merged: fewer model calls than requests


def test_a_request_larger_than_a_batch_is_cut_into_batches():
    model = Model()
    batcher = Batcher(model, BatchingOptions(max_batch_size=4, batch_timeout_micros=0))
    answer = batcher({"x": np.arange(10, dtype=np.float32)})
    np.testing.assert_array_equal(answer["y"], np.arange(10) * 2)
    assert sorted(model.calls) == [2, 4, 4]


def test_only_the_request_at_fault_gets_the_error():
    model = Model()
    batcher = Batcher(model, BatchingOptions(max_batch_size=16, batch_timeout_micros=50_000))

    def request(k: int):
        try:
            return batcher({"x": np.array([-1.0 if k == 3 else k], np.float32)})["y"][0]
        except ValueError as e:
            return str(e)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(request, range(6)))
    assert answers[3] == "a negative row"
    assert [a for k, a in enumerate(answers) if k != 3] == [0, 2, 4, 8, 10]


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="batch_timeout_micros"):
        BatchingOptions(batch_timeout_micros=-1)


def test_without_batching_a_request_calls_the_model_itself_in_pieces_of_the_batch_size():
    model = Model()
    call = model_caller(model, BatchingOptions(max_batch_size=4, enabled=False))
    answer = call({"x": np.arange(10, dtype=np.float32)})
    np.testing.assert_array_equal(answer["y"], np.arange(10) * 2)
    assert model.calls == [4, 4, 2]  # in order, in this thread: --max-batch-size still holds
