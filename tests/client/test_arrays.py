"""Array plumbing of the client: the streamed .npy file, priors, tensors in and out."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from sbiserve.client import InvalidInputError, box_prior, prior_bounds
from sbiserve.client.npy_stream import NpyStream


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (20_001, 5)])
def test_npy_stream_reads_as_the_float32_array(shape: tuple[int, int]) -> None:
    array = np.random.default_rng(0).normal(size=shape)
    stream = NpyStream(array)
    chunks = iter(lambda: stream.read(1000), b"")  # odd sizes cross row boundaries
    data = b"".join(chunks)
    assert len(data) == stream.size == stream.seek(0, 2)
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array.astype(np.float32))


def test_npy_stream_of_a_memory_map_reads_rows_lazily(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(60, dtype=np.int64).reshape(20, 3))
    stream = NpyStream(np.load(path, mmap_mode="r"))
    stream.seek(len(stream.header) + 3 * 4 * 2)  # the third row
    assert np.frombuffer(stream.read(12), dtype="<f4").tolist() == [6.0, 7.0, 8.0]


def test_box_priors_from_pairs_dicts_and_sbi() -> None:
    assert box_prior(([0, -np.inf], [1, None])) == {
        "type": "box",
        "low": [0.0, None],
        "high": [1.0, None],
    }
    assert box_prior({"low": torch.zeros(2), "high": np.ones(2)})["high"] == [1.0, 1.0]
    with pytest.raises(InvalidInputError, match="2 entries"):
        box_prior(([0, 0], [1]))

    from sbi.utils import BoxUniform

    box = BoxUniform(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 5.0]))
    assert prior_bounds(box, 2) == {"type": "box", "low": [-1.0, 0.0], "high": [1.0, 5.0]}
    gamma = torch.distributions.Gamma(torch.ones(3), torch.ones(3))
    assert prior_bounds(gamma, 3) == {"type": "box", "low": [0.0] * 3, "high": [None] * 3}
    normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    assert prior_bounds(normal, 2) is None


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        ([0.0, np.nan], [1.0, 1.0], r"prior low\[1\] is NaN"),
        ([0.0, 0.0], [float("nan"), 1.0], r"prior high\[0\] is NaN"),
        ([0.0, np.inf], [1.0, 1.0], r"prior low\[1\] is \+inf"),
        ([0.0, 0.0], [1.0, -np.inf], r"prior high\[1\] is -inf"),
        (torch.tensor([0.0, float("nan")]), torch.ones(2), r"prior low\[1\] is NaN"),
    ],
)
def test_box_prior_refuses_nan_and_inverted_infinities(
    low: object, high: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:  # not silently unbounded
        box_prior((low, high))
    assert isinstance(raised.value, InvalidInputError) and raised.value.field == "prior"


def test_only_outward_infinities_are_unbounded() -> None:
    prior = box_prior(([-np.inf, -1e300, None], [np.inf, 1e300, None]))
    assert prior["low"] == [None, -1e300, None] and prior["high"] == [None, 1e300, None]
    half = torch.distributions.HalfNormal(torch.ones(2))
    assert prior_bounds(half, 2) == {"type": "box", "low": [0.0, 0.0], "high": [None, None]}
