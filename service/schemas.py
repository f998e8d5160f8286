"""Request and response bodies of the HTTP API (they make the OpenAPI schema).

Numbers in requests are strict: a JSON string (``"0.1"``) or boolean (``true``) where a
number belongs is refused (422), never converted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat


def _not_bool_or_text(value: Any) -> Any:
    """Refuses what lax validation would turn into an integer: ``true``, ``"5"``."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON number, not a string or boolean")
    return value


# An integer given as a JSON number (``5`` or ``5.0``); booleans and strings are refused.
JsonInt = Annotated[int, BeforeValidator(_not_bool_or_text)]
Seed = Annotated[int, Field(ge=0, lt=2**63), BeforeValidator(_not_bool_or_text)]
Row = Annotated[list[StrictFloat], Field(min_length=1)]
Rows = Annotated[list[Row], Field(min_length=1)] | Row
# A dataset's columns: at least two simulations, as rows of numbers or one number each.
Simulations = (
    Annotated[list[Row], Field(min_length=2)] | Annotated[list[StrictFloat], Field(min_length=2)]
)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_input"])
    message: str = Field(examples=["x must have 2 column(s), got 3"])
    field: str | None = Field(default=None, examples=["x"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class DatasetJSON(BaseModel):
    """A small dataset sent as JSON (use multipart .npy/.npz for large ones)."""

    model_config = ConfigDict(extra="forbid")
    theta: Simulations = Field(description="(N, theta_dim) parameters")
    x: Simulations = Field(description="(N, x_dim) simulator outputs")
    name: str | None = None
    theta_names: list[str] | None = Field(
        None, description="a name per parameter, for plots and diagnostics", examples=[["a", "b"]]
    )
    x_names: list[str] | None = Field(None, description="a name per feature of x")


class DatasetInfo(BaseModel):
    dataset_id: str
    num_simulations: int
    theta_dim: int
    x_dim: int
    sha256: str
    name: str | None = None
    created_at: float
    size_bytes: int
    theta_min: list[float] | None = None
    theta_max: list[float] | None = None
    theta_names: list[str] | None = None
    x_names: list[str] | None = None
    created: bool | None = Field(default=None, description="false when it was already stored")


class PriorSpec(BaseModel):
    """Support of theta; ``null`` marks an unbounded side."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["box"] = "box"
    low: list[StrictFloat | None] = Field(min_length=1)
    high: list[StrictFloat | None] = Field(min_length=1)


HYPERPARAMETERS_STORED = (
    'every option the job trains with, defaults included: `{"model": {family options}, '
    '"training": {training options}}`, the same on the job and on its model (the device '
    "is the worker's; the model's `training.device` names it)"
)


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    dataset_id: str
    family: str = Field("energy_flow", examples=["energy_flow"])
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="family options (e.g. hidden_features, beta, blocks) and training "
        "options (e.g. max_epochs, batch_size, learning_rate), flat; unknown keys are "
        "refused, and so is `device` (each worker trains on its own device)",
        examples=[{"max_epochs": 200}],
    )
    prior: PriorSpec | None = None
    name: str | None = Field(None, examples=["two-moons"])


class JobAccepted(BaseModel):
    job_id: str
    status: str


class JobProgress(BaseModel):
    epoch: int
    max_epochs: int | None
    train_loss: float | None
    val_loss: float | None


class JobInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    dataset_id: str | None
    family: str | None
    name: str | None
    hyperparameters: dict[str, Any] = Field(description=HYPERPARAMETERS_STORED)
    prior: dict[str, Any] | None
    progress: JobProgress
    model_id: str | None
    error: str | None
    attempts: int
    worker: str | None
    created_at: float | None
    started_at: float | None
    finished_at: float | None


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model_id: str
    name: str | None
    family: str
    theta_dim: int
    x_dim: int
    dataset_id: str
    job_id: str
    hyperparameters: dict[str, Any] = Field(description=HYPERPARAMETERS_STORED)
    prior: dict[str, Any]
    log_prob_kind: str
    training: dict[str, Any] = Field(description="epochs, train/validation loss curves, time")
    metrics: dict[str, Any]
    created_at: float
    aliases: list[str]
    theta_names: list[str] | None = Field(None, description="from the dataset (or theta_1..)")
    x_names: list[str] | None = None
    diagnostics: dict[str, Any] | None = Field(
        None,
        description="calibration on the held-out split: SBC p-values and rank histograms, "
        "TARP expected-coverage curve and areas, held-out energy score and NLL, findings "
        "and a plain-words verdict (null when turned off or for older models)",
    )


class SampleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="model id or alias", examples=["two-moons"])
    x: Rows = Field(
        description="one observation [x_dim] or a batch [[x_dim], ...]", examples=[[0.0, 0.0]]
    )
    num_samples: JsonInt = Field(1000, ge=1)
    seed: Seed | None = Field(None, description="same seed, same draws; random when null")


class SampleResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_id: str
    samples: list[Any] = Field(
        description="[num_samples][theta_dim] for one x, [num_samples][batch][theta_dim] "
        "for a batch"
    )
    seed: int
    batch_requests: int = Field(description="requests served in the same forward pass")


class LogProbRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    theta: Rows
    x: Rows


class LogProbResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_id: str
    log_prob: list[float | None] = Field(
        description="one value per theta row; null stands for -infinity (theta outside the "
        "prior's support), which JSON cannot write"
    )
    kind: str


class PosteriorPlotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="model id or alias", examples=["two-moons"])
    x: Row = Field(description="one observation [x_dim]", examples=[[0.0, 0.0]])
    num_samples: JsonInt = Field(5000, ge=100, description="draws behind the plot")
    seed: Seed | None = None
    theta: Row | None = Field(None, description="a parameter vector to mark")
    width: JsonInt = Field(800, ge=100, le=4000, description="image width in pixels")
    height: JsonInt = Field(800, ge=100, le=4000, description="image height in pixels")


class Limits(BaseModel):
    """The server's per-request caps (``GET /v1/limits``), from its ``SBISERVE_*`` settings;
    the Python client splits large requests to stay within them."""

    max_num_samples: int = Field(description="Largest num_samples per sampling request.")
    max_observations: int = Field(description="Most observations per request.")
    max_total_draws: int = Field(description="Largest num_samples x observations per request.")
    max_request_bytes: int = Field(description="Largest JSON request body, in bytes.")
    max_upload_bytes: int = Field(description="Largest multipart dataset upload, in bytes.")
    max_dataset_bytes: int = Field(description="Most bytes an upload's arrays may decode to.")
    max_dataset_rows: int = Field(description="Most simulations (rows) in one dataset.")
    sample_timeout_s: float = Field(description="How long the API waits for a worker.")
