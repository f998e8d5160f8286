"""Energy flow: a conditional generator trained with the energy score.

Noise :math:`\\varepsilon \\sim \\mathcal{N}(0, I)` and the embedded observation
:math:`h` pass through one network to give a draw :math:`u = G_\\phi(\\varepsilon, h)` in
one pass. There is no Jacobian determinant and no density: the generator is trained by
minimizing the energy score (:mod:`sbiserve.models.energy_score`) of ``m`` draws against
the simulated :math:`\\theta`, which is minimized in expectation only by the true
posterior.

The block machinery here also carries the semi-autoregressive variant
(:mod:`sbiserve.models.semi_autoregressive_energy_flow`): an energy flow is the one-block
case. The network is a masked MLP (``zuko.nn.MaskedMLP``) on the inputs
``[u, noise, h]``; output block ``b`` sees ``u`` of blocks before ``b`` only, the noise of
block ``b`` only, and all of ``h``.

References:
    | Semi-Autoregressive Energy Flows: Exploring Likelihood-Free Training of
      Normalizing Flows (Si et al., 2023)
    | https://arxiv.org/abs/2206.06672

Example:
    >>> flow = EnergyFlow(theta_dim=2, x_dim=3)
    >>> flow.sample((100,), x=torch.randn(3)).shape
    torch.Size([100, 2])
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import zuko
from torch import Tensor

from .base import ACTIVATIONS, EstimatorConfig, PosteriorEstimator
from .config import require
from .diffusion_schedule import alpha_bars, noised, posterior_step
from .energy_score import (
    check_beta,
    energy_score,
    marginal_energy_scores,
    marginal_spreads,
    mean_spread,
    truncated_energy_score,
)
from .support import BOUNDED_MAPS, BoxPrior, Standardize, ThetaTransform

NOISES = ("gaussian", "uniform")

# The training schedule every budget gets (budget_defaults): a planned run of
# planned_steps(num_simulations) steps, the learning rate decayed from 3e-3 to 0.
SCHEDULE_OPTIONS: dict[str, Any] = {"lr_schedule": "cosine", "learning_rate": 3e-3}
# Epochs without a kept epoch that end a planned run (TrainConfig.planned_patience), after
# the family's 2,000-step floor or half the plan: on the quick protocol's 16 cells it ended
# bernoulli_glm_raw at 10^4 (epoch 94 of 223) and five cells at 10^3 (after 75-130 of 150
# epochs), each with the same epoch kept, and changed no other run (docs/BENCHMARKS.md,
# section 2.16). Not measured with the SAEF's blocks.
PLANNED_PATIENCE = 30
# Optimizer steps of that run at 1,000 simulations; they double with every tenfold budget.
STEPS_AT_1000 = 2000
# Problems with at most this many parameters are "few-parameter" ones in SIZED_DEFAULTS.
FEW_PARAMETERS = 2
# Budgets below this many simulations are "small" in SIZED_DEFAULTS: about the geometric
# midpoint of the two measured budgets, 10^3 and 10^4; the switch itself is not measured.
SMALL_BUDGET = 3000
# The model options and the share of planned_steps that budget_defaults gives a problem,
# by (budget below SMALL_BUDGET, at most FEW_PARAMETERS parameters); docs/BENCHMARKS.md,
# sections 2.5, 2.8, 2.9, 2.11-2.13 and 2.19 (the measurements are in budget_defaults'
# docstring); budget_defaults adds what every sized default shares.
SIZED_DEFAULTS: dict[tuple[bool, bool], tuple[dict[str, Any], float]] = {
    (False, True): (
        {"hidden_features": (96, 96, 96), "mixture_heads": 4, "truncation_tries": 4},
        1.0,
    ),
    (False, False): (
        {"hidden_features": (48, 48, 48), "diffusion_steps": 3, "num_draws": 4},
        2.0,
    ),
    (True, True): (
        {"hidden_features": (48, 48, 48), "mixture_heads": 4, "truncation_tries": 4},
        0.75,
    ),
    (True, False): (
        {"hidden_features": (64, 64, 64), "diffusion_steps": 2, "num_draws": 4},
        0.3,
    ),
}
# A small budget whose number of parameters is not given (the SAEF's blocks) gets this.
SMALL_BUDGET_OPTIONS: dict[str, Any] = {"hidden_features": (64, 64, 64)}

# Smallest spread a weight divides by (standardized units to the power beta).
_MIN_SPREAD = 1e-3


def planned_steps(num_simulations: int) -> int:
    """Optimizer steps of the default training run for ``num_simulations`` simulations.

    2,000 at 1,000 simulations (the step count at which the energy flow's posterior
    shapes settle there: two_moons scored 0.859 at 1,000 steps, 0.651 at 2,000 and 0.654
    at 3,000), doubling with every tenfold budget: 4,000 at 10,000. Fewer than 1,000
    simulations get 2,000 too. Both measured budgets are in ``docs/BENCHMARKS.md``; the
    growth beyond 10,000 simulations follows the same rule without a measurement.
    """
    decades = math.log10(max(num_simulations, 1000) / 1000)
    return round(STEPS_AT_1000 * 2**decades)


@dataclasses.dataclass(frozen=True)
class EnergyFlowConfig(EstimatorConfig):
    """Configuration of :class:`EnergyFlow`.

    Arguments:
        hidden_features: Hidden layer sizes of the generator. 3 x 128: with the cosine
            schedule of :meth:`EnergyFlow.budget_defaults` it scored as well as 3 x 256
            on the quick protocol's tasks at 10^4 simulations, at about a third of the
            time per step and per draw (``docs/BENCHMARKS.md``, section 2.5).
        noise_per_dim: Noise features per parameter dimension.
        residual: Whether the generator uses residual blocks.
        beta: Exponent of the energy score, in (0, 2). 0.5 (as in the SAEF authors'
            code) weights near misses more than 1.0 and fits thin, curved posteriors
            better (sbibm two_moons, 1,000 simulations, 16 draws, SAEF: C2ST 0.72
            against 0.80; ``docs/bench/tuning_energy_flow.jsonl``).
        num_draws: Draws ``m`` per training pair in the energy score (>= 2). More draws
            make the loss and the validation score less noisy, at ``m`` passes per pair.
            8: with the planned schedule of :meth:`EnergyFlow.budget_defaults` 8 draws
            scored as 16 did on all eight tasks of the quick protocol at 10^4 (and on the
            ones measured at 10^3) at half the training time (``docs/BENCHMARKS.md``,
            sections 2.3 and 2.7).
        spread_weighting: Divide each pair's energy score by its posterior's current
            spread (the mean powered distance between draws, from separate draws without
            gradient). The score scales as ``width ** beta``, so without it pairs with
            wide posteriors dominate the loss and narrow ones are fitted last. A positive
            weight that depends on ``x`` only keeps the score proper: each posterior is
            still the minimizer of its own term. On in this class's default, where it
            counted (one pass of 3 x 256, sbibm two_moons, 10,000 simulations,
            observations 1-5, fast C2ST: 0.602 against 0.665 without;
            ``docs/bench/ablation``), but off in every default of
            :meth:`EnergyFlow.budget_defaults`, whose heads, truncation and diffusion
            levels came later: without it sbibm's six tasks of more than two parameters
            at 10^4 scored as with it (mean C2ST 0.694 against 0.695 over three training
            seeds) in about 0.75x the training CPU (``docs/BENCHMARKS.md``, section
            2.21), and the other budgets' defaults scored the same or better in about
            0.85x (two_moons at 10^4 0.522 against 0.535 over three seeds,
            gaussian_mixture 0.529 against 0.522; section 2.22).
        spread_draws: Draws per pair, without gradient, from which ``spread_weighting``
            estimates each posterior's spread (>= 2). The weights are not scored, so
            their noise does not bias the loss. On sbibm's six tasks of more than two
            parameters at 10^4, 2 draws (one distance; in five or ten dimensions it
            estimates the spread to about 15%) scored as 4 did (mean C2ST 0.694 against
            0.702) in 0.83-0.94x the training CPU time (``docs/BENCHMARKS.md``, section
            2.14); the sized defaults now train without the weights (sections 2.21, 2.22).
        noise: Distribution of the generator's input noise: ``gaussian`` (standard
            normal) or ``uniform`` (on :math:`[-\\sqrt{3}, \\sqrt{3}]`, unit variance);
            bounded noise lets the generator draw sharp edges without tails.
        bounded_map: How bounded parameters reach the network: ``logit`` (a logit or
            log per bounded side, as for the density families) or ``fold`` (rescaled
            only, with the generator's output reflected into the prior box; see
            :class:`~sbiserve.models.support.ThetaTransform`). A posterior that reaches
            a bound has infinite tails under the logit map and none under the fold.
            ``fold`` by default (sbibm two_moons, 1,000 simulations, observations 1-5,
            fast C2ST: 0.653 against 0.780 with the logit map).
        fold_penalty: Weight of the mean squared distance (standardized units) by which
            the generator's unfolded outputs go past one reflection of the prior box,
            added to the training loss with ``bounded_map="fold"``. The fold between two
            bounds is periodic: an output spread wide enough to wrap many times folds
            into the uniform prior whatever ``x`` says, a flat optimum that training does
            not leave (sbibm slcp, 10,000 simulations: the validation score stalled from
            epoch 2 and C2ST was 0.980). One reflection, which lets mass reach a bound,
            costs nothing, so the true posterior still minimizes the loss.
        fold_band: Where ``fold_penalty`` starts, in widths of the prior box past its
            bounds (two-sided bounds only): 1 (one reflection, the default) or less, down
            to 0 (any output outside the box pays, so the fold has little to reflect;
            a posterior cut by the box need not be the fold of a wider one).
        mixture_heads: Number ``K`` of output heads of the generator; each draw takes
            the head picked by one more noise feature per block (equal odds), so a draw
            comes from a mixture of ``K`` generators sharing one trunk. One continuous
            map of Gaussian noise must leave mass on the bridges between separated
            modes; ``K`` heads can each take a mode. Costs one wider output layer and
            one comparison per draw. Four heads are the default for one or two
            parameters (:meth:`EnergyFlow.budget_defaults`): a head's linear map can
            rescale the trunk's output, so a mixture of two widths on one centre
            (sbibm gaussian_mixture) needs no product of inputs, which a one-headed
            MLP can only approximate.
        truncation_tries: ``T > 0`` draws from the generator truncated to the prior box
            instead of folded into it: a draw that lands outside is drawn again from
            fresh noise, up to ``T`` more times (then folded), and training scores only
            the draws inside (:func:`~sbiserve.models.energy_score.truncated_energy_score`),
            with ``fold_penalty`` on any distance outside the box. A posterior cut by a
            bound (sbibm two_moons, observation 5) is a truncated density, which the
            fold can only imitate by reflecting mass onto the bound. Needs one block; a
            draw's noise holds ``T + 1`` attempts. Nothing to truncate to, and so
            ignored, with the ``logit`` map or a prior without bounds.
        marginal_weight: Weight of the mean over coordinates of each coordinate's own
            (marginal) energy score, added to the joint score of every block of more
            than one coordinate; with ``spread_weighting`` each coordinate's score is
            divided by that coordinate's spread. The joint score measures distances in
            all coordinates at once, so a coordinate whose posterior is narrow next to
            the others' barely moves it: its sharpness is fitted last. The marginal
            scores are proper for the marginals, so the sum stays proper.
        sign_noise: How many of each parameter's ``noise_per_dim`` noise features are
            replaced by their sign (+1 or -1, equal odds). A network is continuous in
            its inputs, so from continuous noise alone it must leave mass on the bridges
            between separated modes; discrete inputs let it jump between them.
        coordinate_scaling: With ``spread_weighting``, measure the training score's
            distances in units of each coordinate's current posterior spread (per pair,
            from the same separate draws as the weights). Standardization puts every
            coordinate on the prior's scale, but a posterior can be a hundred times
            narrower in one coordinate than in another, and then the joint score barely
            sees the narrow one. A positive scale per coordinate that depends on ``x``
            only is an invertible linear map of the parameter space, so the score stays
            strictly proper and still sees the dependence between coordinates.
        cross_weights: With ``spread_weighting``, weight each half of a pair's ``m``
            training draws by the other half's spread instead of drawing ``spread_draws`` more per
            pair without gradient: the loss is ``(w_B ES_A + w_A ES_B) / 2``, where
            ``ES_A`` is the energy score of the first ``m / 2`` draws and ``w_A`` one over
            their spread (no gradient). Each weight is independent of the draws whose
            score it scales, so the loss stays proper, and training skips the weights'
            extra pass (with 4 draws per pair, half the rows of the forward pass). The
            spread term then sees the pairs within each half only. Needs an even ``m >=
            4``; not with ``coordinate_scaling`` or ``marginal_weight``.
        diffusion_steps: Number ``K`` of generator passes per draw (distributional
            diffusion, :mod:`~sbiserve.models.diffusion_schedule`). At ``K > 1`` the
            generator also reads a noised copy of the parameters and its noise level,
            learns at every level the distribution of the clean parameters given both,
            and a draw runs the ``K`` levels from pure noise down. One pass must map
            continuous noise onto every mode of the posterior at once and leaves mass
            on the bridges between separated modes; the later passes see a noised draw
            that already points at one mode. ``K`` times the sampling cost. One block
            only (not the semi-autoregressive variant). More than two parameters get
            two levels below 3,000 simulations and three from there
            (:meth:`EnergyFlow.budget_defaults`).
    """

    hidden_features: tuple[int, ...] = (128, 128, 128)
    noise_per_dim: int = 2
    residual: bool = True
    beta: float = 0.5
    num_draws: int = 8
    spread_weighting: bool = True
    spread_draws: int = 4
    noise: str = "gaussian"
    bounded_map: str = "fold"
    fold_penalty: float = 1.0
    fold_band: float = 1.0
    mixture_heads: int = 1
    marginal_weight: float = 0.0
    sign_noise: int = 0
    coordinate_scaling: bool = False
    diffusion_steps: int = 1
    truncation_tries: int = 0
    cross_weights: bool = False

    def validate(self) -> None:
        super().validate()
        require(len(self.hidden_features) >= 1, "hidden_features needs at least one layer")
        require(all(h > 0 for h in self.hidden_features), "hidden_features must be > 0")
        require(self.noise_per_dim >= 1, "noise_per_dim must be >= 1")
        require(
            0 <= self.sign_noise <= self.noise_per_dim,
            f"sign_noise must lie in [0, noise_per_dim], got {self.sign_noise}",
        )
        require(self.mixture_heads >= 1, f"mixture_heads must be >= 1, got {self.mixture_heads}")
        require(
            self.diffusion_steps >= 1, f"diffusion_steps must be >= 1, got {self.diffusion_steps}"
        )
        require(self.num_draws >= 2, f"num_draws must be >= 2, got {self.num_draws}")
        require(self.spread_draws >= 2, f"spread_draws must be >= 2, got {self.spread_draws}")
        # Both act through the spread weights; without them they would do nothing, silently
        # (the three-level default for more than two parameters turns the weights off).
        for option in ("cross_weights", "coordinate_scaling"):
            require(
                self.spread_weighting or not getattr(self, option),
                f"{option} needs spread_weighting: true (name both: the service's "
                "budget-sized defaults train without spread weights)",
            )
        if self.cross_weights:
            require(
                self.num_draws >= 4 and self.num_draws % 2 == 0,
                f"cross_weights needs an even num_draws >= 4, got {self.num_draws}",
            )
            require(
                not self.coordinate_scaling and self.marginal_weight == 0,
                "cross_weights does not combine with coordinate_scaling or marginal_weight",
            )
        check_beta(self.beta)
        require(self.fold_penalty >= 0, f"fold_penalty must be >= 0, got {self.fold_penalty}")
        require(0 <= self.fold_band <= 1, f"fold_band must lie in [0, 1], got {self.fold_band}")
        require(
            self.truncation_tries >= 0,
            f"truncation_tries must be >= 0, got {self.truncation_tries}",
        )
        require(
            self.marginal_weight >= 0, f"marginal_weight must be >= 0, got {self.marginal_weight}"
        )
        require(self.noise in NOISES, f"noise must be one of {NOISES}, got {self.noise!r}")
        require(
            self.bounded_map in BOUNDED_MAPS,
            f"bounded_map must be one of {BOUNDED_MAPS}, got {self.bounded_map!r}",
        )


class EnergyFlow(PosteriorEstimator):
    """Non-autoregressive energy flow: one network pass per draw.

    Arguments:
        theta_dim: Number of parameters :math:`D`.
        x_dim: Number of observed features :math:`L`.
        config: Hyperparameters.
        prior: Support of :math:`\\theta`.
    """

    family = "energy_flow"
    log_prob_kind = "none"
    config_class = EnergyFlowConfig
    config: EnergyFlowConfig
    # The energy score fits location and scale early and the shape late, and on a small
    # validation split it barely tells the two apart: sbibm two_moons, 1,000 simulations,
    # the lowest validation score came at epoch 71 (C2ST 0.790) and the weights of epoch
    # 350 scored 0.687. Keeping only epochs after min_steps instead broke
    # gaussian_linear at 1,000 simulations (C2ST 1.0: it overfits from epoch 11), so
    # the latest epoch statistically tied with the best is kept.
    prefer_later_epochs = True
    # ... and the shape takes steps: two_moons at 1,000 simulations scored 0.859 when
    # training stopped at 1,000 steps, 0.651 at 2,000 and 0.654 at 3,000.
    default_min_steps = 2000
    default_plateau_steps = 2000

    @classmethod
    def budget_defaults(cls, num_simulations: int, theta_dim: int | None = None) -> dict[str, Any]:
        """A planned, annealed training run, with a network and a run length sized to
        the budget and the number of parameters (:data:`SIZED_DEFAULTS`).

        Every budget trains a share of :func:`planned_steps` optimizer steps with the
        learning rate decayed from 3e-3 to 0 on a cosine (no early stopping; the epoch
        kept is still the latest within one standard error of the best). Against the
        previous default (1e-3 halved on plateaus, early stopping after a 2,000-step
        floor) it tied at 10^3 and, with the 3 x 128 network, at 10^4 it tied on
        two_moons and was better on gaussian_mixture (``docs/BENCHMARKS.md``, sections
        2.4 and 2.5). No default divides the score by the posterior's spread
        (``spread_weighting``; sections 2.21 and 2.22: the same or better C2ST in
        0.75-0.85x the training CPU). From :data:`SMALL_BUDGET` simulations:

        - one or two parameters: 3 x 96, four mixture heads and all the planned
          steps. 3 x 96 scored as 3 x 128 did (two_moons and gaussian_mixture at 10^3
          and 10^4) at 0.6-0.7x the training time and half the time per draw (section
          2.5); both tasks lost their shapes with half the steps (section 2.4). Four
          heads (section 2.12) took gaussian_mixture from 0.583 (mean of three
          training seeds, 0.557-0.613) to 0.527 (0.526-0.528) and two_moons from 0.599
          to 0.573 (0.566-0.581); NPE-NSF: 0.575 and 0.545. Two heads scored 0.520
          and 0.581. With sign noise instead (a discrete input the one head must
          learn to use) two_moons gained as much but gaussian_mixture collapsed to
          one Gaussian of middle width (0.79). Truncation to the prior box
          (``truncation_tries=4``, section 2.13) took two_moons to 0.529-0.538 over
          three training seeds (0.569-0.581 folded; NPE-NSF 0.540-0.549): its fifth
          observation, cut by the box, went from 0.71-0.74 to 0.56;
        - more: three diffusion levels (``diffusion_steps=3``), 3 x 48, 4 draws per pair
          and twice the planned steps
          (8,000 at 10^4). 3 x 48 scored the six tasks as 3 x 64 did (mean C2ST 0.692
          against 0.694; slcp 0.870-0.898 over three training seeds against 0.878-0.891)
          at about 0.7x the training time (section 2.19). With 3 x 64, on sbibm's six
          tasks of five and ten parameters at 10^4 (section 2.11) the levels took slcp
          from 0.942 to 0.873 and
          slcp_distractors from 0.975 to 0.916 (NPE-NSF: 0.854 and 0.920), kept
          gaussian_linear (0.519 against 0.522), in about 1.2x the one-step 3 x 128's
          training time (it trained half the planned steps) and the same sampling time
          (three passes of a network a quarter the size). Not for one or two
          parameters: the generator shared between levels lost gaussian_mixture's two
          widths (0.79 against 0.61; two_moons tied).

        Below it (sbibm's tasks at 10^3, section 2.8; NPE-NSF trains in 6-17 s there):

        - one or two parameters: 3 x 48, four mixture heads and 1,500 steps. Without
          heads two_moons scored 0.677 and gaussian_mixture 0.643 against 0.666 and
          0.627 with 3 x 64 and 2,000 steps (a hundredth or two worse; NPE-NSF 0.677
          and 0.689) in 0.55x the time, 0.75-0.87x NPE-NSF's; four heads took them to
          0.612 and 0.560 at the same cost per step (two heads: 0.672 and 0.549);
          truncation to the box kept them there (two_moons 0.596-0.622, gaussian_mixture
          0.561-0.567 over three seeds, against 0.600-0.617 and 0.558-0.561);
        - more: two diffusion levels, 3 x 64, 4 draws per pair and 600 steps. One
          pass of 3 x 64 with 8 draws and 600 steps scored every one of the six tasks
          within 0.005 of 1,000 steps, at 0.6x the time (3 x 48 lost 0.03-0.04 on both
          bernoulli_glm tasks; 400 steps lost 0.07 on bernoulli_glm; 3 x 64 scored as
          3 x 128 did at 10^3, mean C2ST 0.779 against 0.790, at 0.45x the time per
          step). Two levels with 4 draws (section 2.12) train half the rows per step
          and scored the six tasks' mean as that one pass did (0.810 against 0.812):
          slcp_distractors 0.984 against 0.989 (NPE-NSF 0.981), gaussian_linear_uniform
          0.639 against 0.666, gaussian_linear 0.608 against 0.594. Three levels lost
          gaussian_linear (0.636) and took longer.

        With ``theta_dim``, a run also ends once no epoch has been kept for
        :data:`PLANNED_PATIENCE` epochs (``planned_patience``) after the 2,000-step floor
        or half the plan: an overfitted run (bernoulli_glm_raw at 10^4 keeps epoch 64 of
        223) stops at epoch 94, with the same weights kept; at 10^3 five of the quick
        protocol's eight runs end after 75-130 of their 150 epochs.

        Without ``theta_dim`` a budget below :data:`SMALL_BUDGET` gets 3 x 64 and every
        budget all the planned steps.
        """
        options = {**SCHEDULE_OPTIONS, "max_steps": planned_steps(num_simulations)}
        small = num_simulations < SMALL_BUDGET
        if theta_dim is None:
            if small:
                options.update(SMALL_BUDGET_OPTIONS)
            return options
        sized, share = SIZED_DEFAULTS[small, theta_dim <= FEW_PARAMETERS]
        options.update(sized)
        options["max_steps"] = round(share * options["max_steps"])
        options["planned_patience"] = PLANNED_PATIENCE
        # Every sized default trains without spread weights (sections 2.21 and 2.22).
        options["spread_weighting"] = False
        return options

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        config: EnergyFlowConfig | None = None,
        prior: BoxPrior | None = None,
    ) -> None:
        config = config or self.config_class()
        super().__init__(theta_dim, x_dim, config, prior)
        if config.bounded_map != "logit":
            self.theta_transform = ThetaTransform(theta_dim, prior, config.bounded_map)
        sizes = self.block_sizes(theta_dim, config)
        starts = [sum(sizes[:b]) for b in range(len(sizes))]
        self.blocks = [(s, s + n) for s, n in zip(starts, sizes, strict=True)]
        k = config.noise_per_dim
        block_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        # Noise fed to the network, then (with several heads) one head selector per block.
        self.network_noise = k * theta_dim
        self.step_noise = self.network_noise + (len(sizes) if config.mixture_heads > 1 else 0)
        # With K diffusion steps a draw takes K passes' noise, then K - 1 Gaussian draws
        # of the parameters' size for the steps down.
        levels = config.diffusion_steps
        require(
            levels == 1 or len(sizes) == 1,
            "diffusion_steps > 1 needs a single block (the energy flow, not the SAEF)",
        )
        require(
            config.truncation_tries == 0 or len(sizes) == 1,
            "truncation_tries > 0 needs a single block (the energy flow, not the SAEF)",
        )
        # Attempts per draw beyond the first: only where there is a box to truncate to.
        bounded = any(v is not None for v in (*self.prior.low, *self.prior.high))
        folds = config.bounded_map == "fold" and bounded
        self.truncation_tries = config.truncation_tries if folds else 0
        # One attempt's noise; with truncation a draw's noise holds 1 + T attempts.
        self.attempt_features = levels * self.step_noise + (levels - 1) * theta_dim
        self.noise_features = (1 + self.truncation_tries) * self.attempt_features
        # The generator's diffusion inputs: the noised parameters and their level.
        self.diffusion_features = theta_dim + 1 if levels > 1 else 0
        self.register_buffer("_alpha_bars", alpha_bars(levels), persistent=False)
        self.register_buffer("block_of", block_of, persistent=False)
        # With K heads, the selector noise's quantiles at 1/K, ..., (K-1)/K: a draw
        # takes head j when its selector lies between edges j - 1 and j (equal odds).
        self.register_buffer("_head_edges", self._selector_edges(config), persistent=False)
        self.register_buffer("_coordinates", torch.arange(theta_dim), persistent=False)
        # Row j: the flat outputs j * D .. j * D + D - 1 of head j (one gather per draw).
        heads = torch.arange(config.mixture_heads)[:, None] * theta_dim
        self.register_buffer("_head_outputs", heads + torch.arange(theta_dim), persistent=False)
        # Set by fold_for_serving: the first layer's weight split into its part for the
        # draw's own inputs (transposed) and its part for the context, and its bias.
        for name in ("_first_own", "_first_h", "_first_bias"):
            self.register_buffer(name, None, persistent=False)
        # Coordinates of blocks wider than one: where marginal_weight adds their own scores.
        wide = torch.tensor([n > 1 for n in sizes])[block_of]
        self.register_buffer("_wide_coordinates", wide, persistent=False)
        noise_block = block_of.repeat_interleave(k)
        adjacency = torch.cat(
            [
                block_of[:, None] > block_of[None, :],  # u of earlier blocks
                block_of[:, None] == noise_block[None, :],  # this block's noise
                torch.ones(theta_dim, self.diffusion_features, dtype=torch.bool),  # u_k, k
                torch.ones(theta_dim, self.context_features, dtype=torch.bool),  # context
            ],
            dim=1,
        )
        self.network = zuko.nn.MaskedMLP(
            adjacency.repeat(config.mixture_heads, 1),  # head j's outputs are rows jD..
            config.hidden_features,
            activation=ACTIVATIONS[config.activation],
            residual=config.residual,
        )

    # Sampling reads one context (C,) for all rows: only the first layer sees it.
    context_broadcasts = True
    # Set by fold_for_serving: the first layer no longer reads u (one block only); it
    # reads the noise after the network's own (head selector, later truncation attempts)
    # through zero weights instead of a slice per draw; one pass (one block, no
    # diffusion levels) gives the support map's coordinates, not u; with truncation to
    # a box under the fold map, theta itself.
    _without_u = False
    _reads_whole_noise = False
    _outputs_phi = False
    _outputs_theta = False

    def fold_for_serving(self) -> None:
        """Folds the observation's z-scoring into the first layer and, for one block,
        drops the first layer's ``u`` inputs (their weights are masked to zero), reads
        the head selector through zero weights, and (one pass) folds the parameters'
        z-scoring into the last layer.

        At one draw each torch operator is a fixed cost comparable to a layer's
        multiply: this saves the z-scoring's subtraction and division, the block loop's
        zeros, a slice of the noise and the inverse z-scoring of the draws.
        ``W h = (W / sigma) x - W (mu / sigma)`` for ``h = (x - mu) / sigma``.
        """
        first = self.network[0]
        if not isinstance(first, torch.nn.Linear):  # masks not folded: nothing to do
            return
        weight, bias = first.weight.detach(), first.bias.detach()
        first_h = weight.shape[1] - self.context_features  # h is the inputs' last part
        if isinstance(self.embedding, torch.nn.Identity) and isinstance(
            self.x_standardize, Standardize
        ):
            scaled = weight[:, first_h:] / self.x_standardize.std
            bias = bias - scaled @ self.x_standardize.mean
            weight = torch.cat([weight[:, :first_h], scaled], dim=1)
            self.x_standardize = torch.nn.Identity()  # type: ignore[assignment]
        if len(self.blocks) == 1 and not self._without_u:  # once: this may run twice
            weight = weight[:, self.theta_dim :]
            self._without_u = True
        folded = torch.nn.Linear(weight.shape[1], weight.shape[0], device=weight.device)
        with torch.no_grad():
            folded.weight.copy_(weight)
            folded.bias.copy_(bias)
        self.network[0] = folded
        # Split once: at one draw each slice of the weight is an operator of its own.
        split = weight.shape[1] - self.context_features
        own = weight[:, :split]
        # One block: zero weights for the noise after the network's own, so the noise a
        # pass gets goes in without a slice (one operator less): with one pass a draw's
        # whole row (head selector, the truncation's later attempts), with diffusion
        # levels one step's (its selector). network[0] keeps the weight without them,
        # so a second fold starts anew.
        one_pass = self.config.diffusion_steps == 1
        read = self.noise_features if one_pass else self.step_noise
        if self._without_u and read > self.network_noise:
            cut = self.network_noise
            zeros = own.new_zeros(own.shape[0], read - cut)
            own = torch.cat([own[:, :cut], zeros, own[:, cut:]], dim=1)
            self._reads_whole_noise = True
        self._first_own = own.contiguous().T  # transposed (in, out), for addmm
        self._first_h = weight[:, split:].contiguous()
        self._first_bias = bias.clone()
        if (
            len(self.blocks) == 1
            and self.config.diffusion_steps == 1
            and not (self._outputs_phi or self._outputs_theta)
        ):
            self._fold_standardization_into_last_layer()

    def _fold_standardization_into_last_layer(self) -> None:
        """``phi = mu + sigma u`` with ``u = W a + b`` is ``(sigma W) a + (sigma b + mu)``:
        the last layer gives ``phi`` (each head's rows scaled alike), one operator less
        per draw. Only when ``u`` feeds nothing but the support map (one pass).

        With truncation under the fold map, a draw the box keeps is the affine
        ``theta = o + w phi`` of it (the fold is the identity inside), so that is folded
        too: the last layer gives ``theta``, and the box check, on ``theta`` against the
        bounds, leaves nothing to do for a draw inside (two operators less per draw).
        """
        last, transform = self.network[-1], self.theta_transform
        if not isinstance(last, torch.nn.Linear) or last.bias is None:
            return
        heads, standardize = self.config.mixture_heads, transform.standardize
        scale, shift = standardize.std, standardize.mean
        to_theta = self.truncation_tries > 0
        if to_theta:
            scale, shift = transform._fold_width * scale, transform.constrain_inside_affine(shift)
        with torch.no_grad():
            last.weight.mul_(scale.repeat(heads)[:, None])
            last.bias.mul_(scale.repeat(heads)).add_(shift.repeat(heads))
        self._outputs_phi = not to_theta
        self._outputs_theta = to_theta

    def sample_from_context(self, h: Tensor, noise: Tensor) -> Tensor:
        tries = self.truncation_tries
        if tries == 0:
            return self.theta_transform.constrain(self._attempt_phi(noise, h))
        # Truncation: draws outside the box take the next attempt's noise (rows of the
        # same draw, so the same seed gives the same draws however requests are batched).
        width, transform = self.attempt_features, self.theta_transform
        whole = self._reads_whole_noise and self.config.diffusion_steps == 1
        phi = self._attempt_phi(noise if whole else noise[..., :width], h)
        # Served, the attempts give theta, and a draw inside the bounds is final. Else
        # they give the fold's coordinates, where the box is [0, 1] (or [0, inf)).
        inside: Callable[[Tensor], Tensor]
        if self._outputs_theta:
            low, high, inside = transform.low, transform.high, transform.contains
        else:
            low, high, inside = transform._phi_low, transform._phi_high, transform.inside_phi
        # Every draw inside (the common case): the fold is the identity there, so the
        # support map is one affine step (none when served); two operators decide it
        # for the whole batch.
        if torch.equal(phi.clamp(low, high), phi):
            return phi if self._outputs_theta else transform.constrain_inside(phi)
        for attempt in range(1, tries + 1):
            rows = (~inside(phi)).nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            context = h if h.ndim == 1 or h.shape[0] == 1 else h[rows]
            retry = noise[rows, attempt * width : (attempt + 1) * width]
            phi = phi.index_put((rows,), self._attempt_phi(retry, context))
        if self._outputs_theta:
            phi = transform.unconstrain(phi)
        return transform.constrain(phi)  # what is still outside is folded

    def _attempt_phi(self, noise: Tensor, h: Tensor) -> Tensor:
        """One attempt's draws ``(N, D)`` in the fold's coordinates (unfolded), or served
        with truncation, ``theta`` (unfolded: the affine map of those)."""
        out = self._transform_noise(noise, h)
        if self._outputs_phi or self._outputs_theta:  # served: the last layer did it
            return out
        return self.theta_transform.standardize.inverse(out)

    @staticmethod
    def _selector_edges(config: EnergyFlowConfig) -> Tensor:
        """Quantiles ``(K - 1,)`` of one noise feature at ``1/K, ..., (K-1)/K``."""
        levels = torch.arange(1, config.mixture_heads, dtype=torch.float64) / config.mixture_heads
        if config.noise == "gaussian":
            edges = torch.special.ndtri(levels)
        else:  # uniform on [-sqrt(3), sqrt(3)]
            edges = (2 * levels - 1) * math.sqrt(3.0)
        return edges.float()

    @staticmethod
    def block_sizes(theta_dim: int, config: EnergyFlowConfig) -> list[int]:
        """Sizes of the autoregressive blocks: one block holding every dimension."""
        return [theta_dim]

    def draw_noise(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Noise for ``num`` draws, shape ``(num, noise_features)``, of the kind configured:
        ``1 + truncation_tries`` attempts of :meth:`_attempt_noise` side by side."""
        config, tries = self.config, self.truncation_tries
        if tries == 0:
            return self._attempt_noise(num, generator)
        if config.diffusion_steps == 1 and config.noise == "gaussian" and not config.sign_noise:
            # Plain Gaussian attempts: the base class's one fill gives the same numbers
            # as the attempts' rows side by side, without the reshape (one operator less).
            return super().draw_noise(num, generator)
        return self._attempt_noise(num * (1 + tries), generator).reshape(num, -1)

    def _attempt_noise(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """One attempt's noise for ``num`` draws, ``(num, attempt_features)``.

        With ``diffusion_steps = K > 1``: ``K`` passes' noise ``(num, K * step_noise)``,
        then standard-normal ``(num, (K - 1) * D)`` for the steps down.
        """
        levels = self.config.diffusion_steps
        if levels == 1:
            return self._step_noise(num, generator)
        steps = self._step_noise(num * levels, generator).reshape(num, -1)
        device = generator.device if generator is not None else self.device
        size = (num, (levels - 1) * self.theta_dim)
        gaussian = torch.randn(size, generator=generator, device=device)
        return torch.cat([steps, gaussian.to(self.device)], dim=-1)

    def _step_noise(self, num: int, generator: torch.Generator | None) -> Tensor:
        """One generator pass's noise for ``num`` draws, shape ``(num, step_noise)``."""
        device = generator.device if generator is not None else self.device
        if self.config.noise == "gaussian":
            noise = torch.randn(num, self.step_noise, generator=generator, device=device)
        else:
            noise = torch.rand(num, self.step_noise, generator=generator, device=device)
            noise = (2 * noise - 1) * math.sqrt(3.0)
        if generator is not None and device != self.device:
            noise = noise.to(self.device)
        signs, k = self.config.sign_noise, self.config.noise_per_dim
        if signs == 1:  # each parameter's first feature (one strided view: few operators)
            noise[:, : self.network_noise : k].sign_()
        elif signs > 1:  # the first ``signs`` features of each parameter
            noise[:, : self.network_noise].view(num, self.theta_dim, k)[..., :signs].sign_()
        return noise

    block_of: Tensor
    _wide_coordinates: Tensor
    _alpha_bars: Tensor
    _head_edges: Tensor
    _coordinates: Tensor
    _head_outputs: Tensor
    _first_own: Tensor | None
    _first_h: Tensor | None
    _first_bias: Tensor | None

    def _generate(self, u: Tensor, noise: Tensor, h: Tensor, level: Tensor | None = None) -> Tensor:
        """One network pass: ``(*, D)``, ``(*, step_noise)``, ``(*, C)`` to ``(*, D)``.

        With ``K`` heads the network gives ``(*, K * D)`` and each block of each draw
        keeps the head its selector noise picks. With diffusion steps, ``level`` ``(*, D
        + 1)`` holds the noised parameters and their level's position ``k / K``.
        """
        network_noise = noise  # with heads, their selectors follow the network's noise
        if noise.shape[-1] != self.network_noise and not self._reads_whole_noise:
            network_noise = noise[..., : self.network_noise]
        parts = [network_noise] if self._without_u else [u, network_noise]
        if level is not None:
            parts.append(level.expand(*network_noise.shape[:-1], -1))
        own = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        out = self._first_layer(own, h)
        for layer in itertools.islice(self.network, 1, None):
            out = layer(out)
        heads = self.config.mixture_heads
        if heads == 1:
            return out
        # One comparison against the selector's quantiles picks each block's head: at
        # one draw every torch operator costs about a layer, so no per-draw CDF.
        # Output j * D + d is head j's coordinate d.
        if len(self.blocks) == 1:  # how many edges lie below the selector: its head (*,)
            selector = noise[..., self.network_noise]
            if not selector.is_contiguous():  # many rows: bucketize would copy it anyway
                selector = selector.contiguous()
            head = torch.bucketize(selector, self._head_edges)
            if head.ndim == 1:  # index_select: cheaper than indexing at one draw
                return out.gather(-1, self._head_outputs.index_select(0, head))
            return out.gather(-1, self._head_outputs[head])
        selector = noise[..., self.network_noise :]  # (*, B)
        head = (selector.unsqueeze(-1) > self._head_edges).sum(-1)[..., self.block_of]
        return out.gather(-1, head * self.theta_dim + self._coordinates)

    def _first_layer(self, own: Tensor, h: Tensor) -> Tensor:
        """The network's first layer on ``[own, h]``, with ``h``'s part computed once per
        distinct context.

        The layer is linear, ``W [own, h] + b = W_own own + (W_h h + b)``, so the context's
        part needs one row per context, not one per draw: ``h`` may be ``(N, C)`` under
        draws ``own`` of ``(m, N, F)`` (broadcast), and a context repeated by ``expand``
        (stride 0, as the sampling path builds it) is computed once. With the
        100-dimensional ``x`` of slcp_distractors and bernoulli_glm_raw that part is a
        fifth of the network's multiplies per draw.
        """
        if h.ndim == 2 and h.shape[0] > 1 and h.stride(0) == 0:
            h = h[:1]  # one context repeated: its part once, broadcast over the rows
        own_weight, h_weight = self._first_own, self._first_h
        if own_weight is not None and h_weight is not None:  # split by fold_for_serving
            context = F.linear(h, h_weight, self._first_bias)
            if own.shape[-1] != own_weight.shape[0]:  # a retry's attempt: fewer zero columns
                own_weight = own_weight[: own.shape[-1]]
            if own.ndim == 2:  # the draws' part added to the context's in one operator
                return torch.addmm(context, own, own_weight)
            return torch.matmul(own, own_weight) + context
        first = self.network[0]
        weight = first.weight
        if isinstance(first, zuko.nn.MaskedLinear):
            weight = first.mask * weight
        split = weight.shape[1] - self.context_features
        return F.linear(own, weight[:, :split]) + F.linear(h, weight[:, split:], first.bias)

    def _transform_noise(self, noise: Tensor, h: Tensor) -> Tensor:
        # One pass per block; block b is filled in from the blocks already drawn. Blocks
        # that feed a later pass are folded into the box (the network saw in-box values
        # in training); the last block is not: ``theta_transform.inverse`` folds on its
        # way to theta and the fold is idempotent, so folding here too would do it twice
        # on the sampling path (for the one-block energy flow, on every draw).
        if self.config.diffusion_steps > 1:
            return self._diffuse(noise, h)
        if self._without_u:  # one block, served: the network does not read u
            return self._generate(noise, noise, h)
        u = torch.zeros(noise.shape[0], self.theta_dim, device=noise.device, dtype=noise.dtype)
        for start, stop in self.blocks[:-1]:
            out = self.theta_transform.fold_u(self._generate(u, noise, h))
            u = torch.cat([u[:, :start], out[:, start:stop], u[:, stop:]], dim=-1)
        start = self.blocks[-1][0]  # the last block runs to the end
        out = self._generate(u, noise, h)
        return out if start == 0 else torch.cat([u[:, :start], out[:, start:]], dim=-1)

    def _level_inputs(self, u_k: Tensor, k: int | Tensor) -> Tensor:
        """The generator's diffusion inputs ``(*, D + 1)``: ``u_k`` (zeros at the top level)
        and ``k / K`` (``k`` in ``1..K``, an int or a tensor of shape ``(*,)``)."""
        position = torch.as_tensor(k, dtype=u_k.dtype, device=u_k.device) / len(self._alpha_bars)
        return torch.cat([u_k, position.expand(*u_k.shape[:-1]).unsqueeze(-1)], dim=-1)

    def _diffuse(self, noise: Tensor, h: Tensor) -> Tensor:
        """A draw through the ``K`` levels, from pure noise at the top level down:
        ``(*, attempt_features)`` and ``(*, C)`` (or broadcastable) to ``(*, D)``, unfolded.

        At each level the generator draws clean parameters given the noised ones; the
        posterior step :math:`q(u_{k-1} \\mid u_k, \\hat u_0)` gives the next level's input.
        """
        levels, dim, width = len(self._alpha_bars), self.theta_dim, self.step_noise
        passes = noise[..., : levels * width].unflatten(-1, (levels, width))
        gaussian = noise[..., levels * width :].unflatten(-1, (levels - 1, dim))
        bars = self._alpha_bars.tolist()
        u_k = torch.zeros_like(gaussian[..., 0, :])  # the top level: no information
        for i, k in enumerate(range(levels, 0, -1)):
            drawn = self._generate(u_k, passes[..., i, :], h, self._level_inputs(u_k, k))
            if k == 1:
                return drawn
            clean = self.theta_transform.fold_u(drawn)
            u_k = posterior_step(u_k, clean, bars[k - 1], bars[k - 2], gaussian[..., i, :])
        raise AssertionError("unreachable: the loop returns at level 1")

    def _training_levels(self, u: Tensor) -> Tensor | None:
        """Diffusion inputs for a batch of clean ``u`` ``(N, D)``: each pair at a level drawn
        uniformly from ``1..K``, noised accordingly; ``None`` for one step."""
        levels = len(self._alpha_bars)
        if levels == 1:
            return None
        k = torch.randint(1, levels + 1, (u.shape[0],), device=u.device)
        u_k = noised(u, self._alpha_bars[k - 1].unsqueeze(-1), torch.randn_like(u))
        # The top level's u_k is pure noise and says nothing about u: it reads zeros, as
        # when sampling (slcp at 10^4: 0.873 against 0.879 with the noise;
        # docs/BENCHMARKS.md, section 2.11).
        return self._level_inputs(u_k * (k < levels).unsqueeze(-1), k)

    def _loss_u(self, u: Tensor, h: Tensor) -> Tensor:
        config = self.config
        return self._block_scores(
            u, h, config.spread_weighting, config.fold_penalty, config.marginal_weight
        )

    def validation_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """The plain (unweighted) energy score per pair, shape ``(N,)``.

        With ``spread_weighting`` the weights follow the model, so the weighted loss of
        two epochs is not comparable (a far too wide posterior divides its large score
        by its large spread); early stopping compares the plain score, which is. With
        diffusion steps it is the score of draws through all the levels: the sampler's
        own posterior, not one level's. With truncation it is the score of the sampler's
        own draws too (redrawn when outside the box, the rest folded): the training
        score of the draws inside gives a pair with fewer than two draws inside a score
        of 0, the best there is, so a model that sent draws out of the box looked better
        (sbibm two_moons at 10^4: the lowest validation score came at epoch 3 of 112 in
        one run, and another kept epoch 70, C2ST 0.605 against 0.541 with its last
        epoch; ``docs/BENCHMARKS.md``, section 2.15).
        """
        u, h = self.theta_transform(theta), self.context(x)
        m, n, beta = self.config.num_draws, u.shape[0], self.config.beta
        if self.truncation_tries > 0:
            h_rows = h.repeat(m, 1)  # row j * n + i: pair i's context
            drawn = self.sample_from_context(h_rows, self.draw_noise(m * n))  # theta
            return energy_score(self.theta_transform(drawn).reshape(m, n, -1), u, beta)
        if self.config.diffusion_steps == 1:
            return self._block_scores(u, h, False, 0.0, 0.0)
        noise = self._attempt_noise(m * n).reshape(m, n, -1)
        return energy_score(self.theta_transform.fold_u(self._diffuse(noise, h)), u, beta)

    def _block_scores(
        self, u: Tensor, h: Tensor, weighted: bool, penalty: float, marginal: float
    ) -> Tensor:
        """Energy scores of ``m`` draws per pair ``(N,)``, summed over blocks.

        With ``marginal > 0`` the mean of the coordinates' own energy scores (each
        divided by its spread when ``weighted``), times ``marginal``, is added for the
        coordinates of blocks wider than one.

        With ``penalty > 0`` the mean squared distance by which the unfolded draws go
        past one reflection of the prior box (``fold_band``; the box itself with
        truncation), times ``penalty``, is added (zero unless ``bounded_map="fold"``).
        With truncation (``truncation_tries > 0`` and a box) only the draws inside the
        box are scored.
        """
        # Teacher forcing: every block is drawn given the true earlier blocks, so all
        # blocks train in one pass; the per-block energy scores are summed (SAEF, eq. 8).
        m, beta = self.config.num_draws, self.config.beta
        level = self._training_levels(u)  # one noise level per pair, for every draw of it
        raw = self._teacher_forced_raw(m, u, h, level)
        truncated = self.truncation_tries > 0  # score the draws inside the box only
        inside = self.theta_transform.inside_u(raw) if truncated else None  # (m, N)
        draws = raw if truncated else self.theta_transform.fold_u(raw)
        if weighted and self.config.cross_weights:
            scores = self._cross_weighted_scores(raw, draws, u, inside)
            return self._with_penalty(scores, raw, penalty)
        weights = [torch.ones(()) for _ in self.blocks]
        coordinate_weights = torch.ones(())
        scale = None  # per-coordinate spreads (N, D), with coordinate_scaling
        if weighted:
            # Separate draws give the weights, so a weight is independent of the draws
            # whose score it scales (weights from the same draws would correlate with
            # the score's gradient and bias the fit towards too wide posteriors).
            with torch.no_grad():
                extra = self._teacher_forced_raw(self.config.spread_draws, u, h, level)
                extra = self.theta_transform.fold_u(extra)
                if self.config.coordinate_scaling:
                    scale = marginal_spreads(extra, 1.0).clamp_min(_MIN_SPREAD)  # (N, D)
                    extra = extra / scale
                weights = [
                    1.0 / mean_spread(extra[..., start:stop], beta).clamp_min(_MIN_SPREAD)
                    for start, stop in self.blocks
                ]
                if marginal > 0:
                    coordinate_weights = 1.0 / marginal_spreads(extra, beta).clamp_min(_MIN_SPREAD)
        if scale is not None:
            draws, u = draws / scale, u / scale
        if inside is not None:  # one block (checked at construction)
            scores = weights[0] * truncated_energy_score(draws, u, inside, beta)
        else:
            scores = sum(  # type: ignore[assignment]
                weight * energy_score(draws[..., start:stop], u[..., start:stop], beta)
                for weight, (start, stop) in zip(weights, self.blocks, strict=True)
            )
        if marginal > 0 and len(self.blocks) < self.theta_dim:
            per_coordinate = coordinate_weights * marginal_energy_scores(draws, u, beta)
            wide = per_coordinate[:, self._wide_coordinates]
            scores = scores + marginal * wide.mean(dim=-1)
        return self._with_penalty(scores, raw, penalty)

    def _with_penalty(self, scores: Tensor, raw: Tensor, penalty: float) -> Tensor:
        """``scores`` ``(N,)`` plus ``penalty`` times the mean squared distance by which
        the unfolded draws ``raw`` ``(m, N, D)`` go past the band of the fold (the box
        itself with truncation)."""
        if penalty > 0:
            band = 0.0 if self.truncation_tries > 0 else self.config.fold_band
            outside = self.theta_transform.outside_u(raw, band)
            scores = scores + penalty * outside.mean(dim=0)
        return scores

    def _cross_weighted_scores(
        self, raw: Tensor, draws: Tensor, u: Tensor, inside: Tensor | None
    ) -> Tensor:
        """``(w_B ES_A + w_A ES_B) / 2`` per pair ``(N,)``, summed over blocks
        (``cross_weights``): halves ``A`` and ``B`` of the ``m`` draws ``(m, N, D)``, each
        scored against ``u`` ``(N, D)`` and weighted by one over the other half's spread
        (folded, without gradient); with truncation (``inside`` ``(m, N)``) each half's
        draws inside the box are scored."""
        beta, half = self.config.beta, raw.shape[0] // 2
        if inside is None:  # the scored draws are already folded
            folded = draws.detach()
        else:
            with torch.no_grad():
                folded = self.theta_transform.fold_u(raw.detach())
        scores = torch.zeros(u.shape[0], device=u.device, dtype=u.dtype)
        for mine, other in (
            (slice(0, half), slice(half, None)),
            (slice(half, None), slice(0, half)),
        ):
            for start, stop in self.blocks:
                spread = mean_spread(folded[other, :, start:stop], beta)
                weight = 1.0 / spread.clamp_min(_MIN_SPREAD)
                if inside is not None:  # one block (checked at construction)
                    score = truncated_energy_score(draws[mine], u, inside[mine], beta)
                else:
                    score = energy_score(draws[mine, :, start:stop], u[:, start:stop], beta)
                scores = scores + weight * score / 2
        return scores

    def _teacher_forced_raw(
        self, m: int, u: Tensor, h: Tensor, level: Tensor | None = None
    ) -> Tensor:
        """``m`` unfolded draws per pair ``(m, N, D)``, blocks given the true earlier ones
        (and, with diffusion steps, at the pair's noise level ``level`` ``(N, D + 1)``)."""
        noise = self._step_noise(m * u.shape[0], None).reshape(m, u.shape[0], -1)
        return self._generate(u.expand(m, *u.shape), noise, h, level)  # h (N, C): broadcast
