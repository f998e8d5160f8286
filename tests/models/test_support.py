"""Prior support maps and standardization."""

from __future__ import annotations

import pytest
import torch

from sbiserve.models import BoxPrior, ConfigError, OutOfSupportError
from sbiserve.models.support import ThetaTransform

PRIOR = BoxPrior(low=(-1.0, 0.0, None, None), high=(2.0, None, 3.0, None))


def inside(n: int) -> torch.Tensor:
    return torch.stack(
        [torch.rand(n) * 3 - 1, torch.rand(n) * 4, 3 - torch.rand(n) * 4, torch.randn(n)], -1
    ).double()


def test_round_trip_and_jacobian() -> None:
    transform = ThetaTransform(4, PRIOR).double()
    theta = inside(100)
    transform.fit(theta)
    u = transform(theta)
    assert torch.allclose(u.mean(0), torch.zeros(4, dtype=torch.double), atol=1e-6)
    assert torch.allclose(transform.inverse(u), theta, atol=1e-6)
    one = theta[:1]
    jac = torch.autograd.functional.jacobian(transform, one)[0, :, 0, :]
    expected = torch.linalg.slogdet(jac).logabsdet
    assert transform.log_abs_det_jacobian(one)[0] == pytest.approx(float(expected), abs=1e-6)


def test_out_of_support_names_the_row() -> None:
    transform = ThetaTransform(4, PRIOR)
    theta = inside(5).float()
    theta[3, 0] = 2.5
    with pytest.raises(OutOfSupportError, match="row 3"):
        transform.check_support(theta)


def test_prior_validation() -> None:
    with pytest.raises(ConfigError, match="same length"):
        BoxPrior(low=(0.0,), high=(1.0, 2.0))
    with pytest.raises(ConfigError, match="smaller"):
        BoxPrior(low=(1.0,), high=(1.0,))
    with pytest.raises(ConfigError, match="finite"):
        BoxPrior(low=(float("nan"),), high=(1.0,))
    assert BoxPrior.from_dict(PRIOR.to_dict()) == PRIOR
