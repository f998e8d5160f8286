"""The whole workflow through the client against a live service: sbi prior and simulator
-> simulations -> training -> posterior draws -> sbi's simulation-based calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbiserve.client import (
    Client,
    InvalidInputError,
    JobCancelledError,
    NoDensityError,
    NotFoundError,
    RemotePosterior,
)
from sbiserve.service.stack import LocalStack

from .conftest import SampleRecorder, box_prior, extra_api, moons

X_O = torch.tensor([0.0, 0.0])


def test_sample_has_sbi_shapes_and_stays_inside_the_prior(posterior: RemotePosterior) -> None:
    draws = posterior.sample((1000,), x=X_O)
    assert isinstance(draws, torch.Tensor) and draws.shape == (1000, 2)
    assert draws.dtype == torch.float32
    assert bool(((draws > -1) & (draws < 1)).all())
    assert posterior.sample((4, 5), x=X_O[None]).shape == (4, 5, 2)  # a batch of one is fine
    assert posterior.sample((3,), x=X_O, reject_outside_prior=True).shape == (3, 2)
    xs = torch.as_tensor(moons(np.zeros((3, 2))), dtype=torch.float32)
    assert posterior.sample_batched((7,), x=xs).shape == (7, 3, 2)


def test_seeds_follow_torch_and_default_x(posterior: RemotePosterior) -> None:
    torch.manual_seed(1)
    first = posterior.sample((20,), x=X_O)
    torch.manual_seed(1)
    assert torch.equal(first, posterior.set_default_x(X_O).sample((20,)))
    assert posterior.default_x.shape == (1, 2)
    assert not torch.equal(first, posterior.sample((20,)))
    assert torch.equal(posterior.sample((20,), seed=5), posterior.sample((20,), seed=5))


@pytest.mark.filterwarnings("ignore:Number of .* should be on the order of 100s:UserWarning")
def test_sbc_runs_on_the_remote_posterior(posterior: RemotePosterior) -> None:
    from sbi.diagnostics import run_sbc

    prior = box_prior()
    thetas = prior.sample((20,))
    xs = torch.as_tensor(moons(thetas.numpy()), dtype=torch.float32)
    ranks, dap = run_sbc(thetas, xs, posterior, num_posterior_samples=50, show_progress_bar=False)
    assert ranks.shape == (20, 2) and dap.shape == (20, 2)
    assert bool(((ranks >= 0) & (ranks <= 50)).all())


def test_log_prob_of_a_generator_is_a_clear_error(
    posterior: RemotePosterior, client: Client
) -> None:
    with pytest.raises(NoDensityError, match="without a density"):
        posterior.log_prob(torch.zeros(3, 2), x=X_O)
    with pytest.raises(NoDensityError) as raised:  # the server says the same
        client.log_prob(posterior.model_id, np.zeros((3, 2)), np.zeros(2))
    assert raised.value.status == 422 and raised.value.field == "model"


def test_numpy_in_numpy_out_and_batches_split_over_requests(posterior: RemotePosterior) -> None:
    small = Client(posterior.client.base_url, max_observations=2)
    xs = moons(np.zeros((5, 2)))
    draws = small.sample(posterior.model_id, xs, num_samples=30, seed=3)
    assert isinstance(draws, np.ndarray) and draws.shape == (30, 5, 2)
    first = Client(posterior.client.base_url).sample(posterior.model_id, xs[:2], 30, seed=3)
    np.testing.assert_array_equal(first, draws[:, :2])  # the first of 3 requests used seed 3


def test_streamed_upload_equals_json_upload(client: Client, tmp_path: object) -> None:
    rng = np.random.default_rng(7)
    theta, x = rng.uniform(-1, 1, (300, 2)), rng.normal(size=(300, 3))
    as_json = client.upload(theta, x)
    streaming = Client(client.base_url, json_max_values=0)
    as_npy = streaming.upload(theta.astype(np.float64), torch.as_tensor(x))
    assert as_npy["dataset_id"] == as_json["dataset_id"]  # same float32 bytes
    assert as_npy["created"] is False
    path = f"{tmp_path}/sims.npz"
    np.savez(path, theta=theta, x=x)
    assert client.upload_npz(path)["dataset_id"] == as_json["dataset_id"]
    assert as_json["dataset_id"] in {d["dataset_id"] for d in client.datasets()}
    client.delete_dataset(as_json)
    with pytest.raises(NotFoundError):
        client.dataset(as_json["dataset_id"])


def test_aliases_jobs_and_cancel(posterior: RemotePosterior, client: Client) -> None:
    model = client.set_alias(posterior.model_id, "moons-test")
    assert "moons-test" in model["aliases"]
    assert client.model("moons-test")["model_id"] == posterior.model_id
    assert RemotePosterior(client, "moons-test").model_id == posterior.model_id
    assert posterior.model_id in {m["model_id"] for m in client.models()}
    client.remove_alias(posterior.model_id, "moons-test")
    with pytest.raises(NotFoundError):
        client.model("moons-test")

    dataset = client.upload(np.random.default_rng(1).uniform(size=(50, 2)), np.ones((50, 2)))
    with pytest.raises(InvalidInputError) as raised:
        client.train(dataset, hyperparameters={"max_epoch": 3})
    assert raised.value.field == "hyperparameters" and "max_epochs" in raised.value.message
    options = {"hyperparameters": {"max_epochs": 10_000}, "prior": ((0, 0), (1, 1))}
    job = client.train(dataset, idempotency_key="client-test-cancel", **options)
    again = client.train(dataset, idempotency_key="client-test-cancel", **options)
    assert again["job_id"] == job["job_id"]  # a retried request does not start a 2nd job
    assert client.job(job)["prior"]["high"] == [1.0, 1.0]
    assert client.cancel(job)["status"] in ("cancelled", "running")
    with pytest.raises(JobCancelledError) as cancelled:
        client.wait(job, progress=False, timeout=60)
    assert cancelled.value.job["status"] == "cancelled"
    assert job["job_id"] in {j["job_id"] for j in client.jobs()}


def test_sampling_is_split_under_every_cap(stack: LocalStack, posterior: RemotePosterior) -> None:
    caps = {"max_num_samples": 40, "max_total_draws": 100, "max_observations": 3}
    recorder = SampleRecorder()
    seen = recorder.bodies
    # an API that enforces the small caps, and a client told about them
    with extra_api(stack.settings.model_copy(update=caps)) as url:
        small = Client(
            url,
            max_num_samples=40,
            max_draws=100,
            max_observations=3,
            transport=recorder,
        )
        xs = moons(np.zeros((4, 2)))
        draws = small.sample(posterior.model_id, xs, num_samples=130, seed=11)
        assert isinstance(draws, np.ndarray) and draws.shape == (130, 4, 2)
        requests = len(seen)
        assert requests == 2 * 4  # (2 + 2 observations) x (40 + 40 + 40 + 10 draws)
        for body in seen:
            rows = np.asarray(body["x"]).reshape(-1, 2).shape[0]
            assert body["num_samples"] <= 40 and rows <= 3
            assert body["num_samples"] * rows <= 100
        assert len({body["seed"] for body in seen}) == requests  # no seed used twice
        again = small.sample(posterior.model_id, xs, num_samples=130, seed=11)
        np.testing.assert_array_equal(draws, again)  # reproducible with the same seed
        assert not np.array_equal(draws, small.sample(posterior.model_id, xs, 130, seed=12))
        one = small.sample(posterior.model_id, xs[0], num_samples=95, seed=11)
        assert one.shape == (95, 2)
        assert len(np.unique(one, axis=0)) == 95  # chunks of draws are not repeats
        # the first chunk is what one request with the user's seed gives
        np.testing.assert_array_equal(one[:40], small.sample(posterior.model_id, xs[0], 40, 11))
        small.close()
