"""Contract: the OpenAPI document describes what the live service does.

Schemathesis generates requests from the document for every operation (a bounded number
each, reproducible), with a real dataset, job and trained model put into the path where
an operation names one, and checks every answer: no 5xx, only documented status codes,
content types and headers, bodies that match their schemas, schema-invalid requests
refused, ``Allow`` on 405. One check is left out: ``positive_data_acceptance`` expects
every schema-valid request to succeed, but some rules span fields and state (``theta``
and ``x`` must have as many rows; ``x`` must fit the model), which a schema cannot say.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from sbiserve.service.app import create_app  # noqa: E402
from sbiserve.service.settings import Settings  # noqa: E402
from sbiserve.service.stack import LocalStack  # noqa: E402

from .conftest import API_KEY, cleanup, fast_settings, train  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own: the generated requests set aliases and delete what they find."""
    settings = fast_settings(tmp_path_factory.mktemp("contract"), api_key=API_KEY)
    try:
        with LocalStack(settings) as running:
            yield running
    finally:
        cleanup(settings)


@pytest.fixture(scope="module")
def real_ids(stack: LocalStack) -> dict[str, str]:
    """Path parameters that name something that exists (one trained model)."""
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=60) as api:
        job = train(api, seed=31)
    assert job["status"] == "succeeded", job
    return {
        "dataset_id": job["dataset_id"],
        "job_id": job["job_id"],
        "model_id": job["model_id"],
        "model_ref": job["model_id"],
    }


def openapi_document() -> dict[str, Any]:
    """The document the live service serves (it does not depend on the settings)."""
    return create_app(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()


schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_service_does_what_its_openapi_document_says(
    case: Any, stack: LocalStack, real_ids: dict[str, str]
) -> None:
    if case.method != "DELETE" and case.path_parameters:  # deletes keep their random ids
        for name in case.path_parameters:
            if name in real_ids:
                case.path_parameters[name] = real_ids[name]
    case.call_and_validate(
        base_url=stack.url,
        headers={"X-API-Key": API_KEY},
        excluded_checks=[positive_data_acceptance],
        timeout=60,
    )


def test_the_document_names_bodies_statuses_and_bounds() -> None:
    paths = openapi_document()["paths"]
    upload = paths["/v1/datasets"]["post"]
    assert set(upload["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"200", "201", "400", "413", "422"} <= set(upload["responses"])
    assert {"400", "409", "413", "422", "503"} <= set(paths["/v1/jobs"]["post"]["responses"])
    (alias,) = [
        p
        for p in paths["/v1/models/{model_id}/aliases/{alias}"]["put"]["parameters"]
        if p["name"] == "alias"
    ]
    assert alias["schema"]["pattern"].startswith("^") and "not" in alias["schema"]
    components = openapi_document()["components"]["schemas"]
    seed = components["SampleRequest"]["properties"]["seed"]["anyOf"][0]
    assert (seed["minimum"], seed["exclusiveMaximum"]) == (0, 2**63)
    assert components["PriorSpec"]["properties"]["low"]["minItems"] == 1


def test_405_lists_every_method_of_the_path(stack: LocalStack) -> None:
    answer = httpx.request(
        "PATCH", f"{stack.url}/v1/models/anything", headers={"X-API-Key": API_KEY}
    )
    assert answer.status_code == 405 and answer.headers["Allow"] == "DELETE, GET"
