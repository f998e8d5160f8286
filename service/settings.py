"""Service configuration, read from ``SBISERVE_*`` environment variables (and ``REDIS_URL``).

Obtain it through :func:`get_settings` (cached); tests and the CLI build their own
:class:`Settings` and pass it to :func:`sbiserve.service.app.create_app` or the worker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the API and the worker."""

    model_config = SettingsConfigDict(env_prefix="SBISERVE_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "SBISERVE_REDIS_URL"),
        description="Redis to use; unset means `serve` spawns a private one.",
    )
    key_prefix: str = Field("sbiserve", description="Prefix of every Redis key.")
    data_dir: Path = Field(Path("sbiserve-data"), description="Dataset and model stores.")
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = Field("auto", description="Worker device: auto, cpu, cuda, cuda:N.")
    api_key: str | None = Field(None, description="If set, required in the X-API-Key header.")

    max_request_bytes: int = Field(16 * 2**20, description="Largest JSON request body.")
    max_upload_bytes: int = Field(4 * 2**30, description="Largest dataset upload.")
    max_dataset_bytes: int = Field(
        4 * 2**30,
        gt=0,
        description="Most bytes an upload's arrays may declare once decoded (an .npz "
        "decompressed), checked from their headers before anything is allocated.",
    )
    max_dataset_rows: int = Field(
        10_000_000, gt=0, description="Most simulations (rows) in one uploaded dataset."
    )
    max_num_samples: int = Field(100_000, description="Largest num_samples per request.")
    max_observations: int = Field(1_000, description="Most observations in one request.")
    max_total_draws: int = Field(2_000_000, description="Largest num_samples x observations.")
    sample_timeout_s: float = Field(30.0, description="How long the API waits for a worker.")
    model_ref_ttl_s: float = Field(
        1.0,
        ge=0,
        description="How long the API keeps what a model reference (id or alias) resolved "
        "to before reading the registry on disk again. Its own alias and delete routes "
        "take effect at once; those of another API process on the same data directory "
        "within this time.",
    )
    redis_timeout_s: float = Field(
        0.75,
        gt=0,
        description="How long the API waits for Redis on any call but the wait for a "
        "sampling reply: while Redis stalls, probes and job calls answer 503 this fast.",
    )

    model_cache_size: int = Field(8, description="Trained models kept resident per worker.")
    sample_max_batch: int = Field(256, description="Requests drained into one batch.")
    tune_malloc: bool = Field(
        True,
        description="Workers fix glibc's mmap and trim thresholds high at start, so the "
        "activations of large sampling passes reuse memory instead of mapping fresh pages "
        "each time, whatever the process did before (in a process that had not trained, "
        "10,000 draws of a 3 x 48 network took 4.6-5.1 ms instead of 6.8-11.7 ms; "
        "`sbiserve.models.tune_malloc`). Freed memory then stays with the worker, up to "
        "128 MiB.",
    )
    sample_wait_ms: int = Field(
        2,
        ge=0,
        description="Under load only (several requests in this or the last batch): how long "
        "a batch may keep collecting requests while they keep arriving. A lone request is "
        "answered at once, without any wait.",
    )
    sample_max_draws: int = Field(
        262_144,
        gt=0,
        description="Most draws in one forward pass: a bigger batch is answered in parts, "
        "small requests first, which bounds memory and lets them return early.",
    )
    torch_threads: int = Field(
        0, ge=0, description="CPU threads torch may use in a worker (0: torch's default)."
    )
    heartbeat_s: float = Field(2.0, description="Worker heartbeat period.")
    claim_after_s: float = Field(30.0, description="Reclaim a job silent for this long.")
    max_attempts: int = Field(3, description="Attempts per job before the dead-letter stream.")
    worker_ttl_s: float = Field(15.0, description="A worker silent this long is not live.")

    diagnostics_pairs: int = Field(
        200,
        ge=0,
        description="Held-out simulations (from the validation split) the worker checks "
        "each trained model's calibration on (SBC, TARP, held-out scores); 0 turns the "
        "diagnostics off.",
    )
    diagnostics_draws: int = Field(
        256, ge=2, description="Posterior draws per held-out simulation in the diagnostics."
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
