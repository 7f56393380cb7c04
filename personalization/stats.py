"""Experiment statistics: the numbers behind an experiment's results page.

Pure Python plus scipy (for the t, normal and chi-square distributions and a root
finder); no Django, so the experiments feature, a Celery task or a notebook can
call it alike. Inputs are per-variant sufficient statistics (users, sum, sum of
squares, and for CUPED the pre-period covariate's sums and the cross-products),
never rows: the SQL side aggregates, this module only does statistics.

Each computation is faithful to one public reference, and
``tests/personalization/experiments/test_stats.py``
checks it against values that reference produced (``tests/stats_reference/``):

=====================================  =============================================
what                                   reference
=====================================  =============================================
``welch_t_test``                       ``scipy.stats.ttest_ind_from_stats``
                                       (``equal_var=False``), CI from the t
                                       distribution with Welch–Satterthwaite df
``frequentist_test`` / ``relative_lift``  gbstats ``TwoSidedTTest`` and
                                       ``SequentialTwoSidedTTest`` (tuning 5000)
``chance_to_win``                      gbstats ``EffectBayesianABTest``, improper
                                       (flat) prior
CUPED (``cuped=True``)                 gbstats ``RegressionAdjustedStatistic``
``srm_check``                          ``scipy.stats.chisquare``
``adjust_p_values``                    ``statsmodels.stats.multitest.multipletests``
                                       (``holm``, ``fdr_bh``)
``sample_size_per_variant``            ``statsmodels.stats.power.NormalIndPower``
                                       with ``proportion_effectsize``
=====================================  =============================================

Two variance conventions therefore live side by side, on purpose. Welch's test
uses the unbiased sample variance (n - 1) for every goal, as scipy does. The
gbstats-faithful computations use gbstats's: ``p(1 - p)`` for a binary goal and
the unbiased variance for a continuous one. For a binary goal the two differ by
a factor ``n / (n - 1)``, which is invisible at experiment sizes but shows in the
fourth decimal on a few dozen users.

Where gbstats refuses to produce a number (control mean zero for a relative
effect, a variant with zero variance, a variant without users) we refuse too,
returning :class:`Unavailable` with a reason instead of a made-up default.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from scipy import optimize as _optimize
from scipy import stats as _sps

GoalKind = Literal["binary", "continuous"]
Method = Literal["fixed", "sequential"]
Correction = Literal["holm", "bh", "none"]
Verdict = Literal[
    "control", "insufficient_sample", "unavailable", "better", "worse", "inconclusive"
]

DEFAULT_ALPHA = 0.05
# gbstats's default; it sets the sample size at which the sequential interval is tightest.
DEFAULT_SEQUENTIAL_TUNING = 5000.0
SRM_THRESHOLD = 0.001
DEFAULT_MIN_USERS = 100

# Reason codes for a number we refuse to compute; stable, the API exposes them.
NO_USERS = "no_users"
TOO_FEW_USERS = "too_few_users"
CONTROL_MEAN_ZERO = "control_mean_zero"
ZERO_VARIANCE = "zero_variance"

_REASON_DETAIL = {
    NO_USERS: "a variant has no users yet",
    TOO_FEW_USERS: "a variant has fewer than two users",
    CONTROL_MEAN_ZERO: "the control's mean is zero, so a relative lift is undefined",
    ZERO_VARIANCE: "a variant's goal has zero variance (for example no conversions)",
}


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Covariate:
    """A variant's pre-exposure covariate for CUPED, over the same users as the goal.

    ``sum_products`` is the sum over users of (goal value × covariate value).
    """

    kind: GoalKind
    sum: float
    sum_squares: float
    sum_products: float

    def __post_init__(self) -> None:
        if self.kind == "binary" and self.sum_squares != self.sum:
            raise ValueError("a binary covariate's sum of squares equals its sum")
        if self.sum_squares < 0:
            raise ValueError("a sum of squares cannot be negative")


@dataclass(frozen=True)
class VariantSummary:
    """Sufficient statistics of one goal in one variant.

    For a binary goal ``sum`` is the number of converted users and
    ``sum_squares == sum``; build it with :meth:`binary`.
    """

    kind: GoalKind
    users: int
    sum: float
    sum_squares: float
    covariate: Covariate | None = None

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError("users cannot be negative")
        if self.sum_squares < 0:
            raise ValueError("a sum of squares cannot be negative")
        if self.kind == "binary":
            if not 0 <= self.sum <= self.users or not float(self.sum).is_integer():
                raise ValueError("conversions must be a whole number between 0 and users")
            if self.sum_squares != self.sum:
                raise ValueError("a binary goal's sum of squares equals its sum")

    @classmethod
    def binary(
        cls, users: int, conversions: int, covariate: Covariate | None = None
    ) -> VariantSummary:
        return cls("binary", users, float(conversions), float(conversions), covariate)

    @classmethod
    def continuous(
        cls, users: int, sum: float, sum_squares: float, covariate: Covariate | None = None
    ) -> VariantSummary:
        return cls("continuous", users, float(sum), float(sum_squares), covariate)

    @property
    def mean(self) -> float:
        return self.sum / self.users if self.users else 0.0

    @property
    def sample_variance(self) -> float:
        """Unbiased (n - 1) variance, the one Welch's test and scipy use."""
        return _unbiased_variance(self.users, self.sum, self.sum_squares)

    @property
    def variance(self) -> float:
        """gbstats's variance: ``p(1 - p)`` for a binary goal, unbiased otherwise."""
        return _gbstats_variance(self.kind, self.users, self.sum, self.sum_squares)


def _unbiased_variance(n: int, total: float, total_squares: float) -> float:
    if n <= 1:
        return 0.0
    # Clamped: sums of squares minus the squared sum can round a hair below zero.
    return max(0.0, (total_squares - total * total / n) / (n - 1))


def _gbstats_variance(kind: GoalKind, n: int, total: float, total_squares: float) -> float:
    if kind == "binary":
        p = total / n if n else 0.0
        return p * (1.0 - p)
    return _unbiased_variance(n, total, total_squares)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unavailable:
    """A statistic that cannot be computed on this data, and why."""

    reason: str
    detail: str

    @classmethod
    def because(cls, reason: str) -> Unavailable:
        return cls(reason, _REASON_DETAIL[reason])


@dataclass(frozen=True)
class WelchResult:
    """Welch's t-test on the absolute difference (treatment - control) of means."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    t_statistic: float
    df: float
    std_error: float


@dataclass(frozen=True)
class FrequentistResult:
    """gbstats's two-sided t-test: absolute or relative effect, fixed or sequential.

    ``df`` is the Welch–Satterthwaite df of a fixed-horizon test and ``None`` for a
    sequential one, whose interval is normal-based. ``theta`` is the CUPED
    coefficient (0 when CUPED was not requested or could not apply).
    """

    relative: bool
    sequential: bool
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    std_error: float
    df: float | None
    theta: float


@dataclass(frozen=True)
class BayesianResult:
    """gbstats's EffectBayesian posterior of the effect under a flat prior."""

    relative: bool
    chance_to_win: float
    expected: float
    ci_low: float
    ci_high: float
    std_error: float
    theta: float


@dataclass(frozen=True)
class SrmResult:
    p_value: float
    # None when a variant planned at weight 0 got users: no statistic exists then.
    chi_square: float | None
    expected_users: list[float]
    flagged: bool


@dataclass(frozen=True)
class SampleSize:
    """Visitors needed per variant, and the numbers that produced it."""

    per_variant: int
    per_variant_exact: float
    total: int
    effect_size: float
    alpha_per_comparison: float


@dataclass(frozen=True)
class BanditAllocation:
    weights: list[float]
    probability_best: list[float]


@dataclass(frozen=True)
class Lift:
    relative: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Difference:
    absolute: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class VariantResult:
    index: int
    is_control: bool
    users: int
    conversions: int | None
    mean: float
    difference: Difference | None = None
    difference_reason: str | None = None
    lift: Lift | None = None
    lift_reason: str | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    chance_to_win: float | None = None
    cuped_theta: float = 0.0
    verdict: Verdict = "control"


@dataclass(frozen=True)
class GoalAnalysis:
    kind: GoalKind
    method: Method
    alpha: float
    cuped: bool
    inverse: bool
    min_users: int
    minimum_sample_reached: bool
    correction: Correction
    variants: list[VariantResult] = field(default_factory=list)


@dataclass(frozen=True)
class ExperimentAnalysis:
    srm: SrmResult
    correction: Correction
    goals: list[GoalAnalysis]


def as_dict(result: Any) -> dict[str, Any]:
    """Plain-dict form of any result dataclass, ready for JSON."""
    return asdict(result)


# ---------------------------------------------------------------------------
# Welch's t-test (scipy's conventions)
# ---------------------------------------------------------------------------


def welch_t_test(
    control: VariantSummary, treatment: VariantSummary, alpha: float = DEFAULT_ALPHA
) -> WelchResult | Unavailable:
    """Welch's unequal-variance t-test on treatment - control, with its CI."""
    _check_pair(control, treatment)
    if control.users == 0 or treatment.users == 0:
        return Unavailable.because(NO_USERS)
    if control.users < 2 or treatment.users < 2:
        return Unavailable.because(TOO_FEW_USERS)
    va = control.sample_variance / control.users
    vb = treatment.sample_variance / treatment.users
    se2 = va + vb
    if se2 <= 0:
        return Unavailable.because(ZERO_VARIANCE)
    df = se2 * se2 / (va * va / (control.users - 1) + vb * vb / (treatment.users - 1))
    se = math.sqrt(se2)
    diff = treatment.mean - control.mean
    t_stat = diff / se
    width = float(_sps.t.ppf(1 - alpha / 2, df)) * se
    return WelchResult(
        difference=diff,
        ci_low=diff - width,
        ci_high=diff + width,
        p_value=float(2 * _sps.t.sf(abs(t_stat), df)),
        t_statistic=t_stat,
        df=df,
        std_error=se,
    )


# ---------------------------------------------------------------------------
# gbstats-faithful effects (frequentist, sequential, Bayesian, CUPED)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arm:
    n: int
    mean: float
    unadjusted_mean: float
    variance: float


def _plain_arm(s: VariantSummary) -> _Arm:
    return _Arm(s.users, s.mean, s.mean, s.variance)


def _arms(
    control: VariantSummary, treatment: VariantSummary, cuped: bool
) -> tuple[_Arm, _Arm, float]:
    """Both arms' moments, regression-adjusted when asked; returns theta too.

    Theta is pooled over the pair, as gbstats's ``compute_theta`` does, so the
    same coefficient adjusts both arms and the adjustment cannot bias the
    difference.
    """
    if not cuped:
        return _plain_arm(control), _plain_arm(treatment), 0.0
    ca, cb = control.covariate, treatment.covariate
    if ca is None or cb is None:
        raise ValueError("CUPED needs a covariate in every variant")
    if ca.kind != cb.kind:
        raise ValueError("the covariate must be of the same kind in every variant")
    n = control.users + treatment.users
    post_sum = control.sum + treatment.sum
    pre_sum = ca.sum + cb.sum
    joint_post_var = _gbstats_variance(
        control.kind, n, post_sum, control.sum_squares + treatment.sum_squares
    )
    joint_pre_var = _gbstats_variance(ca.kind, n, pre_sum, ca.sum_squares + cb.sum_squares)
    theta = 0.0
    if joint_pre_var != 0 and joint_post_var != 0 and n > 1:
        joint_cov = (ca.sum_products + cb.sum_products - post_sum * pre_sum / n) / (n - 1)
        theta = joint_cov / joint_pre_var
    if theta == 0:
        # Without variance in one period there is nothing to regress on; gbstats
        # falls back to the plain statistic and so do we.
        return _plain_arm(control), _plain_arm(treatment), 0.0
    return _adjusted_arm(control, theta), _adjusted_arm(treatment, theta), theta


def _adjusted_arm(s: VariantSummary, theta: float) -> _Arm:
    cov = s.covariate
    assert cov is not None
    n = s.users
    pre_mean = cov.sum / n if n else 0.0
    if n <= 1:
        variance = 0.0
    else:
        pre_var = _gbstats_variance(cov.kind, n, cov.sum, cov.sum_squares)
        covariance = (cov.sum_products - s.sum * cov.sum / n) / (n - 1)
        variance = s.variance + theta * theta * pre_var - 2 * theta * covariance
    return _Arm(n, s.mean - theta * pre_mean, s.mean, variance)


def _effect(a: _Arm, b: _Arm, relative: bool) -> tuple[float, float]:
    """Point estimate and its (delta-method, when relative) variance."""
    if relative:
        # The adjusted difference is scaled by the unadjusted control mean, and the
        # delta-method variance uses unadjusted means, exactly as gbstats does.
        ma = a.unadjusted_mean
        estimate = (b.mean - a.mean) / ma
        variance = b.variance / (ma * ma * b.n) + a.variance * b.unadjusted_mean**2 / (ma**4 * a.n)
        return estimate, variance
    return b.mean - a.mean, b.variance / b.n + a.variance / a.n


def _refusal(a: _Arm, b: _Arm, relative: bool) -> Unavailable | None:
    if a.n == 0 or b.n == 0:
        return Unavailable.because(NO_USERS)
    if relative and (a.mean == 0 or a.unadjusted_mean == 0):
        return Unavailable.because(CONTROL_MEAN_ZERO)
    if a.n < 2 or b.n < 2:
        return Unavailable.because(TOO_FEW_USERS)
    if a.variance <= 0 or b.variance <= 0:
        # gbstats refuses when either arm has no variance, even if the effect's
        # variance would be positive; we follow it rather than invent a number.
        return Unavailable.because(ZERO_VARIANCE)
    return None


def _sequential_rho(alpha: float, tuning: float) -> float:
    # Waudby-Smith et al. 2023 (arXiv 2103.06476v7), eq. 161, as gbstats uses it.
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def frequentist_test(
    control: VariantSummary,
    treatment: VariantSummary,
    *,
    relative: bool = True,
    method: Method = "fixed",
    alpha: float = DEFAULT_ALPHA,
    cuped: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> FrequentistResult | Unavailable:
    """Two-sided test of treatment against control, as gbstats computes it.

    ``method="sequential"`` gives always-valid intervals and p-values (they stay
    valid however often the results are looked at), wider than fixed-horizon ones.
    """
    _check_pair(control, treatment)
    a, b, theta = _arms(control, treatment, cuped)
    refusal = _refusal(a, b, relative)
    if refusal is not None:
        return refusal
    estimate, variance = _effect(a, b, relative)
    if variance <= 0:
        return Unavailable.because(ZERO_VARIANCE)
    se = math.sqrt(variance)
    if method == "sequential":
        n_total = a.n + b.n
        rho = _sequential_rho(alpha, sequential_tuning)
        nrho2_1 = n_total * rho * rho + 1
        # Eq. 9 of the same paper; s2 is the per-unit variance the paper expects.
        width = math.sqrt(variance * n_total) * math.sqrt(
            2 * nrho2_1 * math.log(math.sqrt(nrho2_1) / alpha) / (n_total * rho) ** 2
        )
        # Eq. 155, in log space: the e-value overflows a float on large effects.
        st2 = estimate * estimate * n_total / variance
        log_evalue = rho * rho * st2 / (2 * nrho2_1) - 0.5 * math.log(nrho2_1)
        p_value = math.exp(-log_evalue) if log_evalue > 0 else 1.0
        return FrequentistResult(
            relative, True, estimate, estimate - width, estimate + width, p_value, se, None, theta
        )
    df = (b.variance / b.n + a.variance / a.n) ** 2 / (
        b.variance**2 / (b.n**2 * (b.n - 1)) + a.variance**2 / (a.n**2 * (a.n - 1))
    )
    width = float(_sps.t.ppf(1 - alpha / 2, df)) * se
    # sf rather than gbstats's 1 - cdf: same value, without cancellation for tiny p.
    p_value = float(2 * _sps.t.sf(abs(estimate) / se, df))
    return FrequentistResult(
        relative, False, estimate, estimate - width, estimate + width, p_value, se, df, theta
    )


def relative_lift(
    control: VariantSummary,
    treatment: VariantSummary,
    *,
    method: Method = "fixed",
    alpha: float = DEFAULT_ALPHA,
    cuped: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> FrequentistResult | Unavailable:
    """(treatment - control) / control with a delta-method interval."""
    return frequentist_test(
        control,
        treatment,
        relative=True,
        method=method,
        alpha=alpha,
        cuped=cuped,
        sequential_tuning=sequential_tuning,
    )


def chance_to_win(
    control: VariantSummary,
    treatment: VariantSummary,
    *,
    relative: bool = True,
    inverse: bool = False,
    alpha: float = DEFAULT_ALPHA,
    cuped: bool = False,
) -> BayesianResult | Unavailable:
    """Posterior probability that the treatment beats the control.

    With gbstats's default improper prior the posterior of the effect is normal,
    centred on the observed effect with the frequentist variance. ``inverse``
    is for goals where lower is better.
    """
    _check_pair(control, treatment)
    a, b, theta = _arms(control, treatment, cuped)
    refusal = _refusal(a, b, relative)
    if refusal is not None:
        return refusal
    mean, variance = _effect(a, b, relative)
    if variance <= 0:
        return Unavailable.because(ZERO_VARIANCE)
    sd = math.sqrt(variance)
    p_higher = float(_sps.norm.sf(0, mean, sd))
    low, high = (float(x) for x in _sps.norm.ppf([alpha / 2, 1 - alpha / 2], mean, sd))
    return BayesianResult(
        relative=relative,
        chance_to_win=1 - p_higher if inverse else p_higher,
        expected=mean,
        ci_low=low,
        ci_high=high,
        std_error=sd,
        theta=theta,
    )


def _check_pair(control: VariantSummary, treatment: VariantSummary) -> None:
    if control.kind != treatment.kind:
        raise ValueError("control and treatment must summarise the same kind of goal")


# ---------------------------------------------------------------------------
# Sample-ratio mismatch
# ---------------------------------------------------------------------------


def srm_check(
    users: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square goodness of fit of observed users against the planned weights.

    A variant planned at weight 0 is left out of the test when it has no users,
    and is a mismatch outright when it has some (no chi-square is defined there).
    """
    if len(users) != len(weights) or len(users) < 2:
        raise ValueError("one weight per variant, and at least two variants")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    total = sum(users)
    total_weight = sum(weights)
    expected = [w / total_weight * total for w in weights]
    if total == 0:
        return SrmResult(1.0, 0.0, expected, False)
    if any(w == 0 and u > 0 for u, w in zip(users, weights, strict=True)):
        return SrmResult(0.0, None, expected, True)
    cells = [(u, e) for u, e in zip(users, expected, strict=True) if e > 0]
    chi_square = sum((u - e) ** 2 / e for u, e in cells)
    p_value = float(_sps.chi2.sf(chi_square, len(cells) - 1))
    return SrmResult(p_value, chi_square, expected, p_value < threshold)


# ---------------------------------------------------------------------------
# Multiple comparisons
# ---------------------------------------------------------------------------


def adjust_p_values(p_values: Sequence[float], method: Correction = "holm") -> list[float]:
    """Holm (family-wise error) or Benjamini-Hochberg (false discovery rate)."""
    m = len(p_values)
    if method == "none" or m == 0:
        return list(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, (m - rank) * p_values[i])
            adjusted[i] = min(1.0, running)
    elif method == "bh":
        running = math.inf
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, p_values[i] * m / (rank + 1))
            adjusted[i] = min(1.0, running)
    else:
        raise ValueError(f"unknown correction {method!r}")
    return adjusted


# ---------------------------------------------------------------------------
# Power
# ---------------------------------------------------------------------------


def sample_size_per_variant(
    baseline_rate: float,
    mde_relative: float,
    *,
    power: float = 0.8,
    alpha: float = DEFAULT_ALPHA,
    variants: int = 2,
) -> SampleSize:
    """Visitors each variant needs to detect a relative change of a conversion rate.

    Two-sided z-test on Cohen's h (``proportion_effectsize``), equal allocation:
    statsmodels's ``NormalIndPower().solve_power(..., ratio=1)``. With more than
    one treatment, alpha is split over the ``variants - 1`` comparisons with the
    control (Bonferroni), which also keeps Holm's correction at the planned power.
    """
    target = baseline_rate * (1 + mde_relative)
    if not 0 < baseline_rate < 1 or not 0 < target < 1:
        raise ValueError("baseline and target rates must lie strictly between 0 and 1")
    if mde_relative == 0:
        raise ValueError("the minimum detectable effect cannot be zero")
    if variants < 2:
        raise ValueError("an experiment has at least two variants")
    alpha_each = alpha / (variants - 1)
    if not 0 < alpha_each < 1 or not alpha_each < power < 1:
        raise ValueError("need 0 < alpha < power < 1")
    h = abs(2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(baseline_rate)))
    z = float(_sps.norm.isf(alpha_each / 2))

    def shortfall(n: float) -> float:
        shift = h * math.sqrt(n / 2)
        # Both tails, as statsmodels counts them, so the root matches it exactly.
        return float(_sps.norm.sf(z - shift) + _sps.norm.cdf(-z - shift)) - power

    # The one-tail closed form overshoots slightly, so it brackets the root.
    upper = 2 * ((z + float(_sps.norm.ppf(power))) / h) ** 2 + 1
    n_exact = float(_optimize.brentq(shortfall, 1e-9, upper, xtol=1e-10, rtol=1e-15))
    per_variant = math.ceil(n_exact)
    return SampleSize(per_variant, n_exact, per_variant * variants, h, alpha_each)


# ---------------------------------------------------------------------------
# Bandit allocation
# ---------------------------------------------------------------------------


def thompson_weights(
    arms: Sequence[VariantSummary],
    *,
    min_share: float = 0.0,
    draws: int = 10_000,
    seed: int | None = None,
    prior: tuple[float, float] = (1.0, 1.0),
) -> BanditAllocation:
    """Traffic weights by Thompson sampling from each arm's Beta posterior.

    An arm's raw weight is the Monte-Carlo probability that it is the best; then
    every arm is lifted to at least ``min_share`` (taken proportionally from the
    others) so that no arm starves and its estimate keeps improving.
    """
    if len(arms) < 2:
        raise ValueError("a bandit has at least two arms")
    if any(arm.kind != "binary" for arm in arms):
        raise ValueError("Thompson sampling here uses Beta posteriors: binary goals only")
    if not 0 <= min_share * len(arms) <= 1:
        raise ValueError("min_share times the number of arms must be between 0 and 1")
    if draws < 1:
        raise ValueError("draws must be positive")
    rng = random.Random(seed)
    a0, b0 = prior
    params = [(a0 + arm.sum, b0 + arm.users - arm.sum) for arm in arms]
    wins = [0] * len(arms)
    for _ in range(draws):
        samples = [rng.betavariate(a, b) for a, b in params]
        wins[max(range(len(samples)), key=samples.__getitem__)] += 1
    probability_best = [w / draws for w in wins]
    return BanditAllocation(_with_floor(probability_best, min_share), probability_best)


def _with_floor(weights: list[float], floor: float) -> list[float]:
    """Raise every weight to ``floor``, scaling the rest so the total stays 1."""
    floored: set[int] = set()
    while True:
        free = [i for i in range(len(weights)) if i not in floored]
        remaining = 1.0 - floor * len(floored)
        mass = sum(weights[i] for i in free)
        scaled = {
            i: (weights[i] / mass * remaining if mass > 0 else remaining / len(free)) for i in free
        }
        # Scaling the others down can push another arm under the floor: repeat.
        below = {i for i, w in scaled.items() if w < floor}
        if not below:
            return [floor if i in floored else scaled[i] for i in range(len(weights))]
        floored |= below


# ---------------------------------------------------------------------------
# A goal, an experiment
# ---------------------------------------------------------------------------


def minimum_sample_reached(
    variants: Sequence[VariantSummary], min_users: int = DEFAULT_MIN_USERS
) -> bool:
    """No verdict before every variant has ``min_users`` users.

    Early numbers swing widely and the normal approximations behind every
    interval here are poor on a handful of users.
    """
    return bool(variants) and all(v.users >= min_users for v in variants)


def analyze_goal(
    variants: Sequence[VariantSummary],
    *,
    method: Method = "fixed",
    alpha: float = DEFAULT_ALPHA,
    cuped: bool = False,
    inverse: bool = False,
    min_users: int = DEFAULT_MIN_USERS,
    correction: Correction = "holm",
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> GoalAnalysis:
    """Every treatment (``variants[1:]``) against the control (``variants[0]``).

    The p-value is the test of the absolute difference, so it exists even when
    the control's mean is zero and the relative lift does not: Welch's test for a
    plain fixed-horizon analysis, gbstats's regression-adjusted or sequential
    test otherwise. ``p_value_adjusted`` is corrected across this goal's
    treatments; :func:`analyze_experiment` widens the family to every goal.
    """
    if len(variants) < 2:
        raise ValueError("a goal needs a control and at least one treatment")
    use_cuped = cuped and all(v.covariate is not None for v in variants)
    control = variants[0]
    enough = minimum_sample_reached(variants, min_users)
    results = [_variant_row(0, control, is_control=True)]
    for index, treatment in enumerate(variants[1:], start=1):
        row = _variant_row(index, treatment, is_control=False)

        absolute: WelchResult | FrequentistResult | Unavailable
        if method == "fixed" and not use_cuped:
            absolute = welch_t_test(control, treatment, alpha)
        else:
            absolute = frequentist_test(
                control,
                treatment,
                relative=False,
                method=method,
                alpha=alpha,
                cuped=use_cuped,
                sequential_tuning=sequential_tuning,
            )
        lift = frequentist_test(
            control,
            treatment,
            relative=True,
            method=method,
            alpha=alpha,
            cuped=use_cuped,
            sequential_tuning=sequential_tuning,
        )
        bayes = chance_to_win(control, treatment, inverse=inverse, alpha=alpha, cuped=use_cuped)
        if isinstance(absolute, Unavailable):
            row = replace(row, difference_reason=absolute.reason)
        else:
            estimate = (
                absolute.difference if isinstance(absolute, WelchResult) else absolute.estimate
            )
            row = replace(
                row,
                difference=Difference(estimate, absolute.ci_low, absolute.ci_high),
                p_value=absolute.p_value,
            )
        if isinstance(lift, Unavailable):
            row = replace(row, lift_reason=lift.reason)
        else:
            row = replace(
                row, lift=Lift(lift.estimate, lift.ci_low, lift.ci_high), cuped_theta=lift.theta
            )
        if not isinstance(bayes, Unavailable):
            row = replace(row, chance_to_win=bayes.chance_to_win)
        results.append(row)
    goal = GoalAnalysis(
        kind=control.kind,
        method=method,
        alpha=alpha,
        cuped=use_cuped,
        inverse=inverse,
        min_users=min_users,
        minimum_sample_reached=enough,
        correction=correction,
        variants=results,
    )
    return _corrected([goal], correction)[0]


def _variant_row(index: int, s: VariantSummary, *, is_control: bool) -> VariantResult:
    return VariantResult(
        index=index,
        is_control=is_control,
        users=s.users,
        conversions=int(s.sum) if s.kind == "binary" else None,
        mean=s.mean,
    )


def _verdict(row: VariantResult, goal: GoalAnalysis) -> Verdict:
    if row.is_control:
        return "control"
    if not goal.minimum_sample_reached:
        return "insufficient_sample"
    if row.p_value_adjusted is None or row.difference is None:
        return "unavailable"
    if row.p_value_adjusted >= goal.alpha or row.difference.absolute == 0:
        return "inconclusive"
    higher = row.difference.absolute > 0
    return "better" if higher != goal.inverse else "worse"


def _corrected(goals: Sequence[GoalAnalysis], correction: Correction) -> list[GoalAnalysis]:
    """Adjust every available p-value across ``goals`` as one family."""
    slots = [
        (g, v)
        for g, goal in enumerate(goals)
        for v, row in enumerate(goal.variants)
        if row.p_value is not None
    ]
    adjusted = adjust_p_values([goals[g].variants[v].p_value or 0.0 for g, v in slots], correction)
    by_slot = dict(zip(slots, adjusted, strict=True))
    out: list[GoalAnalysis] = []
    for g, goal in enumerate(goals):
        goal = replace(goal, correction=correction)
        rows = [
            replace(row, p_value_adjusted=by_slot.get((g, v)))
            for v, row in enumerate(goal.variants)
        ]
        rows = [replace(row, verdict=_verdict(row, goal)) for row in rows]
        out.append(replace(goal, variants=rows))
    return out


def analyze_experiment(
    users: Sequence[int],
    weights: Sequence[float],
    goals: Sequence[GoalAnalysis],
    correction: Correction = "holm",
    srm_threshold: float = SRM_THRESHOLD,
) -> ExperimentAnalysis:
    """SRM check on exposures, and one correction across all goals' comparisons."""
    return ExperimentAnalysis(
        srm=srm_check(users, weights, srm_threshold),
        correction=correction,
        goals=_corrected(goals, correction),
    )


# ---------------------------------------------------------------------------
# The small API the experiments issue names (thin wrappers over the above)
# ---------------------------------------------------------------------------


def SampleStats(  # noqa: N802 - the name the issue gives this constructor
    n: int, sum: float, sum_squares: float, kind: GoalKind | None = None
) -> VariantSummary:
    """Per-variant sums. A binary goal has ``sum_squares == sum`` (whole conversions)."""
    if kind is None:
        is_binary = sum == sum_squares and float(sum).is_integer() and 0 <= sum <= n
        kind = "binary" if is_binary else "continuous"
    return VariantSummary(kind, n, float(sum), float(sum_squares))


@dataclass(frozen=True)
class Comparison:
    lift: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    reason: str | None = None


def compare(
    control: VariantSummary,
    treatment: VariantSummary,
    *,
    alpha: float = DEFAULT_ALPHA,
    difference: Literal["relative", "absolute"] = "relative",
    method: Method = "fixed",
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> Comparison:
    """Treatment against control: the effect (relative or absolute), its interval, p-value.

    A fixed-horizon absolute difference is Welch's test (scipy's conventions); the rest
    is gbstats's t-test. ``lift`` is ``None`` with a ``reason`` when it does not exist
    (e.g. a relative lift over a control mean of zero).
    """
    if difference == "absolute" and method == "fixed":
        welch = welch_t_test(control, treatment, alpha)
        if isinstance(welch, Unavailable):
            return Comparison(None, None, None, None, welch.reason)
        return Comparison(welch.difference, welch.ci_low, welch.ci_high, welch.p_value)
    result = frequentist_test(
        control,
        treatment,
        relative=difference == "relative",
        method=method,
        alpha=alpha,
        sequential_tuning=sequential_tuning,
    )
    if isinstance(result, Unavailable):
        return Comparison(None, None, None, None, result.reason)
    return Comparison(result.estimate, result.ci_low, result.ci_high, result.p_value)


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of observed users against planned weights."""
    return srm_check(counts, weights).p_value
