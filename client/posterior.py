"""A remote model behind ``sbi``'s posterior interface: :class:`RemotePosterior`.

It answers ``sample``, ``sample_batched``, ``log_prob``, ``log_prob_batched`` and
``set_default_x`` with sbi's signatures and torch tensors, so sbi workflows and
diagnostics (``sbi.diagnostics.run_sbc``, ``run_tarp``, ``sbi.analysis.pairplot``) run
against a model trained by the service. torch is imported when a method is called, not
when this module is imported.

Example::

    posterior = RemotePosterior(Client("http://gpu-box:8000"), "two-moons")
    theta = posterior.sample((1000,), x=x_o)  # a (1000, theta_dim) tensor
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .arrays import to_numpy, to_torch
from .client import Client
from .errors import InvalidInputError, NoDensityError

# Options of sbi's samplers that a remote model has no use for (it draws inside the prior's
# support in one pass); accepted so code written for sbi posteriors runs unchanged.
SBI_SAMPLING_OPTIONS = frozenset(
    {
        "max_sampling_batch_size",
        "reject_outside_prior",
        "max_sampling_time",
        "return_partial_on_timeout",
        "sample_with",
    }
)


class RemotePosterior:
    """``q(theta | x)`` of a served model, with sbi's ``NeuralPosterior`` methods.

    The model reference is resolved once: an alias moved later does not change which
    model this object draws from.

    Arguments:
        client: The client to ask through.
        model: A model id or alias.
        prior: The prior the model was trained under (kept as ``.prior``, as in sbi).
    """

    def __init__(self, client: Client, model: str, prior: Any = None) -> None:
        self.client = client
        self.meta = client.model(model)
        self.model_id: str = self.meta["model_id"]
        self.theta_dim: int = int(self.meta["theta_dim"])
        self.x_dim: int = int(self.meta["x_dim"])
        # Names given at upload (``theta_1``.. without): for labelling draws, see named().
        self.theta_names: list[str] = list(
            self.meta.get("theta_names") or [f"theta_{i + 1}" for i in range(self.theta_dim)]
        )
        self.x_names: list[str] = list(
            self.meta.get("x_names") or [f"x_{i + 1}" for i in range(self.x_dim)]
        )
        self.prior = prior
        self._x: Any = None

    def __repr__(self) -> str:
        return (
            f"RemotePosterior(model={self.model_id!r}, family={self.meta['family']!r}, "
            f"theta_dim={self.theta_dim}, x_dim={self.x_dim}, at {self.client.base_url})"
        )

    @property
    def default_x(self) -> Any:
        """The observation used when ``x`` is not passed (a ``(1, x_dim)`` tensor) or None."""
        return self._x

    @default_x.setter
    def default_x(self, x: Any) -> None:
        self.set_default_x(x)

    def set_default_x(self, x: Any) -> RemotePosterior:
        """Sets the observation used when ``x`` is not passed; returns ``self`` (chainable)."""
        self._x = to_torch(self._single_x(x), like=x)[None]
        return self

    def sample(
        self,
        sample_shape: Sequence[int] = (),
        x: Any = None,
        show_progress_bars: bool = False,
        *,
        seed: int | None = None,
        **sbi_options: Any,
    ) -> Any:
        """Draws ``(*sample_shape, theta_dim)`` from the posterior at one observation.

        Arguments:
            sample_shape: Shape of the draws, e.g. ``(1000,)``.
            x: One observation ``(x_dim,)`` or ``(1, x_dim)``; default: :attr:`default_x`.
            show_progress_bars: Accepted for sbi compatibility (no bar is shown).
            seed: Server-side seed; by default one is drawn from torch's global generator,
                so ``torch.manual_seed`` makes a script reproducible as with local sbi.
            sbi_options: sbi's sampling options (``max_sampling_batch_size``,
                ``reject_outside_prior``...), accepted so sbi code runs unchanged; they do
                not apply (the model draws inside the prior's support in one pass). Any
                other name is a ``TypeError``.
        """
        _check_sbi_options(sbi_options)
        x = self._x_or_default(x)
        draws = self.client.sample(
            self.model_id, self._single_x(x), _numel(sample_shape), self._seed(seed)
        )
        return to_torch(draws.reshape(*sample_shape, self.theta_dim), like=x)

    def named(self, draws: Any) -> dict[str, np.ndarray]:
        """Draws ``(..., theta_dim)`` as ``{theta name: array (...)}``, in parameter order."""
        values = np.asarray(draws)
        if values.shape[-1:] != (self.theta_dim,):
            raise ValueError(
                f"draws must end in theta_dim={self.theta_dim}, got shape {values.shape}"
            )
        return {name: values[..., i] for i, name in enumerate(self.theta_names)}

    def sample_batched(
        self,
        sample_shape: Sequence[int],
        x: Any,
        show_progress_bars: bool = False,
        *,
        seed: int | None = None,
        **sbi_options: Any,
    ) -> Any:
        """Draws ``(*sample_shape, B, theta_dim)``: the posterior at each of ``B`` observations.

        Arguments:
            sample_shape: Shape of the draws per observation.
            x: Observations ``(B, x_dim)``.
            show_progress_bars, seed, sbi_options: As in :meth:`sample`.
        """
        _check_sbi_options(sbi_options)
        rows = self._rows(x)
        draws = self.client.sample(self.model_id, rows, _numel(sample_shape), self._seed(seed))
        return to_torch(draws.reshape(*sample_shape, rows.shape[0], self.theta_dim), like=x)

    def log_prob(
        self,
        theta: Any,
        x: Any = None,
        norm_posterior: bool = True,
        track_gradients: bool = False,
        leakage_correction_params: dict[str, Any] | None = None,
    ) -> Any:
        """``log q(theta | x)`` for ``theta`` ``(N, theta_dim)`` at one observation -> ``(N,)``.

        Raises:
            NoDensityError: The family is a generator without a density (``energy_flow``,
                ``semi_autoregressive_energy_flow``): use sample-based diagnostics such as
                ``run_sbc(..., reduce_fns="marginals")``, or train a family with a density.
        """
        self._check_density()
        x = self._x_or_default(x)
        values = self.client.log_prob(self.model_id, self._theta(theta), self._single_x(x))
        return to_torch(values, like=theta)

    def log_prob_batched(
        self,
        theta: Any,
        x: Any,
        norm_posterior: bool = True,
        track_gradients: bool = False,
        leakage_correction_params: dict[str, Any] | None = None,
    ) -> Any:
        """``log q(theta[s, b] | x[b])`` for ``theta`` ``(S, B, theta_dim)``, ``x`` ``(B, x_dim)``.

        Returns:
            ``(S, B)``.
        """
        self._check_density()
        rows = self._rows(x)
        values = to_numpy(theta, "theta")
        if values.ndim != 3 or values.shape[1:] != (rows.shape[0], self.theta_dim):
            raise InvalidInputError(
                f"theta must be (S, {rows.shape[0]}, {self.theta_dim}) for {rows.shape[0]} "
                f"observations, got {list(values.shape)}",
                field="theta",
            )
        num = values.shape[0]
        repeated = np.broadcast_to(rows, (num, *rows.shape)).reshape(-1, self.x_dim)
        flat = self.client.log_prob(self.model_id, values.reshape(-1, self.theta_dim), repeated)
        return to_torch(np.asarray(flat).reshape(num, rows.shape[0]), like=theta)

    # -- checks ---------------------------------------------------------------------------

    def _check_density(self) -> None:
        if self.meta.get("log_prob_kind", "none") == "none":
            raise NoDensityError(
                f"model {self.model_id} (family {self.meta['family']}) is a generator "
                "without a density, so log_prob is not available; sample-based diagnostics "
                "work (e.g. run_sbc with reduce_fns='marginals'), or train a family with a "
                "density (npe, ebflow, ffjord, self_normalizing_flow, ...)",
                field="model",
            )

    def _x_or_default(self, x: Any) -> Any:
        if x is not None:
            return x
        if self._x is None:
            raise InvalidInputError(
                "no x given and no default x set: pass x=... or call set_default_x(x_o)",
                field="x",
            )
        return self._x

    def _single_x(self, x: Any) -> np.ndarray:
        """One observation as ``(x_dim,)``; a batch of one is accepted, as in sbi."""
        values = to_numpy(x, "x")
        if values.size != self.x_dim:
            rows = values.reshape(-1, self.x_dim).shape[0] if values.size % self.x_dim == 0 else 0
            hint = " (use sample_batched / log_prob_batched for a batch)" if rows > 1 else ""
            raise InvalidInputError(
                f"x must be one observation of x_dim={self.x_dim} values, got shape "
                f"{list(values.shape)}{hint}",
                field="x",
            )
        return values.reshape(self.x_dim)

    def _rows(self, x: Any) -> np.ndarray:
        values = to_numpy(x, "x")
        if values.ndim != 2 or values.shape[1] != self.x_dim:
            raise InvalidInputError(
                f"x must be a batch (B, {self.x_dim}), got shape {list(values.shape)}",
                field="x",
            )
        return values

    def _theta(self, theta: Any) -> np.ndarray:
        values = to_numpy(theta, "theta")
        if values.size == 0 or values.shape[-1] != self.theta_dim:
            raise InvalidInputError(
                f"theta must be (N, {self.theta_dim}), got shape {list(values.shape)}",
                field="theta",
            )
        return values.reshape(-1, self.theta_dim)

    @staticmethod
    def _seed(seed: int | None) -> int:
        if seed is not None:
            return seed
        import torch

        return int(torch.randint(0, 2**62, ()).item())


def _check_sbi_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - SBI_SAMPLING_OPTIONS)
    if unknown:
        raise TypeError(
            f"unexpected sampling option(s) {unknown}; sbi's {sorted(SBI_SAMPLING_OPTIONS)} "
            "are accepted (and do not apply to a remote model)"
        )


def _numel(sample_shape: Sequence[int]) -> int:
    count = math.prod(int(n) for n in sample_shape)
    if count < 1:
        raise InvalidInputError(
            f"sample_shape {tuple(sample_shape)} asks for no draws", field="num_samples"
        )
    return count
