"""Built-in toy simulators for the demo and the tests (numpy only).

``two_moons`` follows sbibm's definition: prior :math:`U(-1, 1)^2`, a crescent whose
position depends on :math:`|\\theta_1 + \\theta_2|` and :math:`\\theta_2 - \\theta_1`, so the
posterior for an observation near the origin has two crescent-shaped modes.
"""

from __future__ import annotations

import numpy as np

TWO_MOONS_LOW = (-1.0, -1.0)
TWO_MOONS_HIGH = (1.0, 1.0)


def two_moons_prior(num: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``num`` parameters from :math:`U(-1, 1)^2`, shape ``(num, 2)``."""
    return rng.uniform(-1.0, 1.0, size=(num, 2))


def two_moons_simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Simulates two-moons observations, shape ``(N, 2)``, for ``theta`` ``(N, 2)``."""
    theta = np.atleast_2d(theta)
    angle = rng.uniform(-np.pi / 2, np.pi / 2, size=theta.shape[0])
    radius = rng.normal(0.1, 0.01, size=theta.shape[0])
    point = np.stack([radius * np.cos(angle) + 0.25, radius * np.sin(angle)], axis=-1)
    shift = np.stack(
        [
            -np.abs(theta[:, 0] + theta[:, 1]) / np.sqrt(2),
            (-theta[:, 0] + theta[:, 1]) / np.sqrt(2),
        ],
        axis=-1,
    )
    return point + shift
