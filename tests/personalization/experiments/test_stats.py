"""The statistics engine against scipy, statsmodels and gbstats, and its own rules.

Reference values come from ``tests/stats_reference/expected.json``, written by
``tests/stats_reference/build_references.py`` in a separate virtualenv (gbstats
pins numpy < 2). These tests need no database and none of the reference packages.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from scipy import integrate
from scipy import stats as sps

from personalization import stats
from personalization.stats import (
    CONTROL_MEAN_ZERO,
    NO_USERS,
    ZERO_VARIANCE,
    BayesianResult,
    Covariate,
    FrequentistResult,
    Unavailable,
    VariantSummary,
    WelchResult,
)

EXPECTED: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "stats_reference" / "expected.json").read_text()
)
DATASETS = {d["name"]: d for d in EXPECTED["datasets"]}
COMPARISONS = [(d, c) for d in EXPECTED["datasets"] for c in d["comparisons"]]
COMPARISON_IDS = [f"{d['name']}-v{c['treatment']}" for d, c in COMPARISONS]
CUPED_COMPARISONS = [(d, c) for d, c in COMPARISONS if "gbstats_cuped" in c]
CUPED_IDS = [f"{d['name']}-v{c['treatment']}" for d, c in CUPED_COMPARISONS]
FREQUENTIST_KEYS = [
    f"{method}_{diff}{suffix}"
    for method in ("fixed", "sequential")
    for diff in ("relative", "absolute")
    for suffix in ("", "_alpha10")
]
GBSTATS_REASONS = {
    "ZERO_NEGATIVE_BASELINE_VARIATION": CONTROL_MEAN_ZERO,
    "ZERO_NEGATIVE_VARIANCE": ZERO_VARIANCE,
    "NO_UNITS_IN_VARIATION": NO_USERS,
}


def close(expected: float) -> Any:
    """Four decimals; relative for large values (sample sizes, revenue sums)."""
    return pytest.approx(expected, abs=1e-4, rel=1e-6)


def summary(kind: str, row: dict[str, Any]) -> VariantSummary:
    cov = row.get("covariate")
    return VariantSummary(
        kind,  # type: ignore[arg-type]
        row["users"],
        row["sum"],
        row["sum_squares"],
        Covariate(**cov) if cov else None,
    )


def pair(dataset: dict[str, Any], comparison: dict[str, Any]) -> tuple[VariantSummary, ...]:
    rows = dataset["variants"]
    return summary(dataset["kind"], rows[0]), summary(
        dataset["kind"], rows[comparison["treatment"]]
    )


def check_frequentist(result: Any, ref: dict[str, Any], relative: bool) -> None:
    if ref["error"] is not None:
        assert isinstance(result, Unavailable), result
        if relative:
            assert result.reason == GBSTATS_REASONS[ref["error"]]
        return
    assert isinstance(result, FrequentistResult), result
    assert result.estimate == close(ref["estimate"])
    assert result.ci_low == close(ref["ci_low"])
    assert result.ci_high == close(ref["ci_high"])
    assert result.p_value == close(ref["p_value"])


def check_bayesian(result: Any, ref: dict[str, Any], relative: bool) -> None:
    if ref["error"] is not None:
        assert isinstance(result, Unavailable), result
        if relative:
            assert result.reason == GBSTATS_REASONS[ref["error"]]
        return
    assert isinstance(result, BayesianResult), result
    assert result.chance_to_win == close(ref["chance_to_win"])
    assert result.expected == close(ref["expected"])
    assert result.ci_low == close(ref["ci_low"])
    assert result.ci_high == close(ref["ci_high"])


def frequentist(
    control: VariantSummary, treatment: VariantSummary, key: str, cuped: bool = False
) -> Any:
    method, diff, *rest = key.split("_")
    return stats.frequentist_test(
        control,
        treatment,
        relative=diff == "relative",
        method=method,  # type: ignore[arg-type]
        alpha=0.10 if rest else 0.05,
        cuped=cuped,
    )


# --- against the references -------------------------------------------------


def test_reference_file__as_committed__came_from_gbstats_with_default_tuning() -> None:
    assert EXPECTED["versions"]["gbstats"] == "0.8.0"
    assert EXPECTED["sequential_tuning_parameter"] == stats.DEFAULT_SEQUENTIAL_TUNING
    assert {"small", "large", "zero_conversion_treatment", "zero_conversion_control"} <= set(
        DATASETS
    )
    assert {"unequal_weights", "continuous", "cuped_continuous", "cuped_binary"} <= set(DATASETS)


@pytest.mark.parametrize(("dataset", "comparison"), COMPARISONS, ids=COMPARISON_IDS)
def test_welch_t_test__reference_dataset__matches_scipy(
    dataset: dict[str, Any], comparison: dict[str, Any]
) -> None:
    ref = comparison["scipy_welch"]
    result = stats.welch_t_test(*pair(dataset, comparison))
    assert isinstance(result, WelchResult)
    assert result.p_value == close(ref["p_value"])
    assert result.t_statistic == close(ref["statistic"])
    assert result.df == close(ref["df"])
    assert result.difference == close(ref["difference"])
    assert result.ci_low == close(ref["ci_low"])
    assert result.ci_high == close(ref["ci_high"])


@pytest.mark.parametrize("key", FREQUENTIST_KEYS)
@pytest.mark.parametrize(("dataset", "comparison"), COMPARISONS, ids=COMPARISON_IDS)
def test_frequentist_test__reference_dataset__matches_gbstats(
    dataset: dict[str, Any], comparison: dict[str, Any], key: str
) -> None:
    control, treatment = pair(dataset, comparison)
    result = frequentist(control, treatment, key)
    check_frequentist(result, comparison["gbstats"][key], relative="relative" in key)


@pytest.mark.parametrize("diff", ["relative", "absolute"])
@pytest.mark.parametrize(("dataset", "comparison"), COMPARISONS, ids=COMPARISON_IDS)
def test_chance_to_win__reference_dataset__matches_gbstats_flat_prior(
    dataset: dict[str, Any], comparison: dict[str, Any], diff: str
) -> None:
    result = stats.chance_to_win(*pair(dataset, comparison), relative=diff == "relative")
    check_bayesian(result, comparison["gbstats"][f"bayesian_{diff}"], diff == "relative")


@pytest.mark.parametrize("key", FREQUENTIST_KEYS)
@pytest.mark.parametrize(("dataset", "comparison"), CUPED_COMPARISONS, ids=CUPED_IDS)
def test_cuped__reference_dataset__matches_gbstats_regression_adjusted(
    dataset: dict[str, Any], comparison: dict[str, Any], key: str
) -> None:
    control, treatment = pair(dataset, comparison)
    result = frequentist(control, treatment, key, cuped=True)
    check_frequentist(result, comparison["gbstats_cuped"][key], relative="relative" in key)
    assert isinstance(result, FrequentistResult)
    assert result.theta == close(comparison["gbstats_cuped"]["theta"])


@pytest.mark.parametrize("diff", ["relative", "absolute"])
@pytest.mark.parametrize(("dataset", "comparison"), CUPED_COMPARISONS, ids=CUPED_IDS)
def test_cuped_chance_to_win__reference_dataset__matches_gbstats(
    dataset: dict[str, Any], comparison: dict[str, Any], diff: str
) -> None:
    result = stats.chance_to_win(
        *pair(dataset, comparison), relative=diff == "relative", cuped=True
    )
    check_bayesian(result, comparison["gbstats_cuped"][f"bayesian_{diff}"], diff == "relative")


@pytest.mark.parametrize("dataset", EXPECTED["datasets"], ids=lambda d: d["name"])
def test_srm_check__reference_dataset__matches_scipy_chisquare(dataset: dict[str, Any]) -> None:
    users = [row["users"] for row in dataset["variants"]]
    result = stats.srm_check(users, dataset["weights"])
    assert result.chi_square == close(dataset["srm"]["scipy_chisquare_statistic"])
    assert result.p_value == close(dataset["srm"]["scipy_chisquare_p_value"])
    assert result.p_value == close(dataset["srm"]["gbstats_check_srm"])
    assert result.flagged == (dataset["srm"]["scipy_chisquare_p_value"] < 0.001)


@pytest.mark.parametrize("method", ["holm", "bh"])
@pytest.mark.parametrize("case", EXPECTED["corrections"], ids=lambda c: f"{len(c['p_values'])}p")
def test_adjust_p_values__reference_list__matches_statsmodels_multipletests(
    case: dict[str, Any], method: str
) -> None:
    adjusted = stats.adjust_p_values(case["p_values"], method)  # type: ignore[arg-type]
    assert adjusted == [close(x) for x in case[method]]


@pytest.mark.parametrize(
    "case",
    EXPECTED["power"],
    ids=lambda c: f"p{c['baseline_rate']}-mde{c['mde_relative']}-k{c['variants']}",
)
def test_sample_size_per_variant__reference_case__matches_statsmodels_normal_ind_power(
    case: dict[str, Any],
) -> None:
    result = stats.sample_size_per_variant(
        case["baseline_rate"],
        case["mde_relative"],
        power=case["power"],
        alpha=case["alpha"],
        variants=case["variants"],
    )
    assert result.effect_size == close(case["effect_size"])
    assert result.per_variant_exact == close(case["nobs1"])
    assert result.per_variant == math.ceil(case["nobs1"])
    assert result.total == result.per_variant * case["variants"]


# --- the engine's own rules -------------------------------------------------


def test_relative_lift__control_mean_zero__is_null_with_reason() -> None:
    control, treatment = VariantSummary.binary(800, 0), VariantSummary.binary(820, 5)
    lift = stats.relative_lift(control, treatment)
    assert isinstance(lift, Unavailable)
    assert lift.reason == CONTROL_MEAN_ZERO
    assert "zero" in lift.detail

    goal = stats.analyze_goal([control, treatment], min_users=100)
    row = stats.as_dict(goal)["variants"][1]
    assert row["lift"] is None
    assert row["lift_reason"] == CONTROL_MEAN_ZERO
    assert row["chance_to_win"] is None
    # The absolute test still answers: the control's zero is a fact, not a failure.
    assert row["p_value"] == close(
        DATASETS["zero_conversion_control"]["comparisons"][0]["scipy_welch"]["p_value"]
    )
    json.dumps(stats.as_dict(goal), allow_nan=False)


def test_relative_lift__continuous_control_mean_zero__is_null_with_reason() -> None:
    control = VariantSummary.continuous(200, 0.0, 50.0)
    treatment = VariantSummary.continuous(200, 10.0, 60.0)
    lift = stats.relative_lift(control, treatment)
    assert isinstance(lift, Unavailable) and lift.reason == CONTROL_MEAN_ZERO
    assert isinstance(stats.welch_t_test(control, treatment), WelchResult)


def test_minimum_sample__a_variant_below_min_users__no_verdict() -> None:
    control, treatment = VariantSummary.binary(99, 5), VariantSummary.binary(5000, 900)
    goal = stats.analyze_goal([control, treatment], min_users=100)
    assert not goal.minimum_sample_reached
    assert goal.variants[1].p_value is not None and goal.variants[1].p_value < 1e-6
    assert [v.verdict for v in goal.variants] == ["control", "insufficient_sample"]


def test_minimum_sample__every_variant_at_min_users__verdict_given() -> None:
    control, treatment = VariantSummary.binary(100, 5), VariantSummary.binary(100, 40)
    goal = stats.analyze_goal([control, treatment], min_users=100)
    assert goal.minimum_sample_reached
    assert goal.variants[1].verdict == "better"
    inverse = stats.analyze_goal([control, treatment], min_users=100, inverse=True)
    assert inverse.variants[1].verdict == "worse"
    # Lower is better here, so the treatment's chance to win is small.
    assert inverse.variants[1].chance_to_win is not None
    assert inverse.variants[1].chance_to_win < 0.05


def test_minimum_sample__no_difference__inconclusive() -> None:
    variants = [VariantSummary.binary(1000, 50), VariantSummary.binary(1000, 52)]
    assert stats.analyze_goal(variants).variants[1].verdict == "inconclusive"


def test_srm_check__chi_square_p_below_0_001__flags() -> None:
    result = stats.srm_check([10000, 10500], [0.5, 0.5])
    assert result.p_value < 0.001
    assert result.flagged


def test_srm_check__p_just_above_0_001__not_flagged() -> None:
    # chi-square 10.0 on 1 df: p ≈ 0.00157
    result = stats.srm_check([10000, 10450], [1, 1])
    assert 0.001 < result.p_value < 0.01
    assert not result.flagged


def test_srm_check__zero_weight_arm_with_users__flags() -> None:
    result = stats.srm_check([500, 480, 3], [0.5, 0.5, 0.0])
    assert result.flagged and result.p_value == 0.0
    json.dumps(stats.as_dict(result), allow_nan=False)
    unused = stats.srm_check([500, 480, 0], [0.5, 0.5, 0.0])
    assert unused.p_value == close(sps.chisquare([500, 480]).pvalue)


def test_srm_check__no_users_yet__not_flagged() -> None:
    result = stats.srm_check([0, 0], [1, 1])
    assert result.p_value == 1.0 and not result.flagged


def test_sequential__same_data__interval_wider_than_fixed() -> None:
    control, treatment = VariantSummary.binary(5000, 250), VariantSummary.binary(5000, 300)
    fixed = stats.relative_lift(control, treatment)
    sequential = stats.relative_lift(control, treatment, method="sequential")
    assert isinstance(fixed, FrequentistResult) and isinstance(sequential, FrequentistResult)
    assert sequential.ci_low < fixed.ci_low < fixed.ci_high < sequential.ci_high
    assert sequential.p_value > fixed.p_value


def test_analyze_goal__sequential_method__reports_always_valid_numbers() -> None:
    dataset = DATASETS["large"]
    variants = [summary("binary", row) for row in dataset["variants"]]
    row = stats.analyze_goal(variants, method="sequential", correction="none").variants[1]
    ref = dataset["comparisons"][0]["gbstats"]
    assert row.lift is not None
    assert row.lift.ci_low == close(ref["sequential_relative"]["ci_low"])
    assert row.lift.ci_high == close(ref["sequential_relative"]["ci_high"])
    assert row.p_value == close(ref["sequential_absolute"]["p_value"])
    assert row.p_value_adjusted == row.p_value


def test_sequential__huge_effect__p_value_underflows_to_zero_without_overflow() -> None:
    control, treatment = VariantSummary.binary(10**6, 10**4), VariantSummary.binary(10**6, 10**5)
    result = stats.frequentist_test(control, treatment, method="sequential")
    assert isinstance(result, FrequentistResult)
    assert result.p_value == 0.0


def test_cuped__correlated_covariate__narrows_the_interval() -> None:
    dataset = DATASETS["cuped_continuous"]
    control, treatment = pair(dataset, dataset["comparisons"][0])
    plain = stats.relative_lift(control, treatment)
    adjusted = stats.relative_lift(control, treatment, cuped=True)
    assert isinstance(plain, FrequentistResult) and isinstance(adjusted, FrequentistResult)
    assert adjusted.ci_high - adjusted.ci_low < 0.8 * (plain.ci_high - plain.ci_low)
    goal = stats.analyze_goal([control, treatment], cuped=True)
    assert goal.cuped and goal.variants[1].cuped_theta == close(adjusted.theta)


def test_cuped__constant_covariate__falls_back_to_plain_statistic() -> None:
    flat = Covariate("continuous", 100.0, 100.0, 30.0)
    control = VariantSummary.binary(100, 30, flat)
    treatment = VariantSummary.binary(100, 40, Covariate("continuous", 100.0, 100.0, 40.0))
    adjusted = stats.relative_lift(control, treatment, cuped=True)
    plain = stats.relative_lift(control, treatment)
    assert isinstance(adjusted, FrequentistResult) and adjusted.theta == 0.0
    assert adjusted == plain


def test_analyze_goal__cuped_without_covariates__reports_not_applied() -> None:
    variants = [VariantSummary.binary(1000, 50), VariantSummary.binary(1000, 70)]
    assert not stats.analyze_goal(variants, cuped=True).cuped


def test_analyze_experiment__two_goals__one_correction_across_all_comparisons() -> None:
    conversions = stats.analyze_goal(
        [summary("binary", row) for row in DATASETS["large"]["variants"]]
    )
    revenue = stats.analyze_goal(
        [summary("continuous", row) for row in DATASETS["continuous"]["variants"]]
    )
    users = [row["users"] for row in DATASETS["large"]["variants"]]
    result = stats.analyze_experiment(users, [1, 1, 1], [conversions, revenue], correction="bh")
    raw = [v.p_value for g in (conversions, revenue) for v in g.variants[1:]]
    assert all(p is not None for p in raw)
    expected = stats.adjust_p_values([p for p in raw if p is not None], "bh")
    got = [v.p_value_adjusted for g in result.goals for v in g.variants[1:]]
    assert got == expected
    assert not result.srm.flagged
    assert result.goals[0].variants[0].p_value_adjusted is None
    json.dumps(stats.as_dict(result), allow_nan=False)


def test_analyze_goal__zero_conversion_treatment__lift_null_but_welch_answers() -> None:
    dataset = DATASETS["zero_conversion_treatment"]
    variants = [summary("binary", row) for row in dataset["variants"]]
    row = stats.analyze_goal(variants).variants[1]
    assert row.lift is None and row.lift_reason == ZERO_VARIANCE
    assert row.p_value == close(dataset["comparisons"][0]["scipy_welch"]["p_value"])
    assert row.verdict == "worse"


def test_variant_summary__more_conversions_than_users__raises() -> None:
    with pytest.raises(ValueError):
        VariantSummary.binary(10, 11)
    with pytest.raises(ValueError):
        VariantSummary("binary", 10, 2.5, 2.5)
    with pytest.raises(ValueError):
        stats.welch_t_test(VariantSummary.binary(10, 1), VariantSummary.continuous(10, 1, 1))


def test_welch_t_test__single_user_arm__unavailable() -> None:
    result = stats.welch_t_test(VariantSummary.binary(1, 1), VariantSummary.binary(50, 3))
    assert isinstance(result, Unavailable) and result.reason == "too_few_users"


def test_adjust_p_values__empty_list__empty() -> None:
    assert stats.adjust_p_values([], "holm") == []


def test_sample_size_per_variant__target_rate_above_one__raises() -> None:
    with pytest.raises(ValueError):
        stats.sample_size_per_variant(0.8, 0.5)


# --- the bandit ---------------------------------------------------------------


def test_thompson_weights__bandit_simulation__moves_to_best_arm_and_keeps_minimum() -> None:
    true_rates = [0.03, 0.04, 0.06]
    min_share = 0.1
    rng = random.Random(7)
    users = [0, 0, 0]
    conversions = [0, 0, 0]
    weights = [1 / 3] * 3
    best_arm_traffic = []
    for round_ in range(20):
        sent = [0, 0, 0]
        for _ in range(500):
            arm = rng.choices(range(3), weights)[0]
            sent[arm] += 1
            conversions[arm] += rng.random() < true_rates[arm]
        users = [u + s for u, s in zip(users, sent, strict=True)]
        best_arm_traffic.append(sent[2] / 500)
        arms = [VariantSummary.binary(u, c) for u, c in zip(users, conversions, strict=True)]
        weights = stats.thompson_weights(arms, min_share=min_share, draws=2000, seed=round_).weights
        assert sum(weights) == pytest.approx(1.0)
        assert min(weights) >= min_share - 1e-12
    assert weights[2] > 0.7
    # Equal split at first; most of the traffic to the best arm by the end.
    assert best_arm_traffic[0] < 0.45
    assert sum(best_arm_traffic[-5:]) / 5 > 0.7
    # The losing arms are held at the floor, not starved below it.
    assert weights[0] == pytest.approx(min_share)
    assert users[0] > 0.1 * 500 * 15


def test_thompson_weights__two_arms__probability_best_matches_exact_integral() -> None:
    a, b = VariantSummary.binary(400, 20), VariantSummary.binary(400, 28)
    result = stats.thompson_weights([a, b], draws=100_000, seed=1)
    pa, pb = sps.beta(21, 381), sps.beta(29, 373)
    exact, _ = integrate.quad(lambda x: pb.pdf(x) * pa.cdf(x), 0, 1)
    standard_error = math.sqrt(exact * (1 - exact) / 100_000)
    assert result.probability_best[1] == pytest.approx(exact, abs=4 * standard_error)
    assert result.weights == result.probability_best


def test_thompson_weights__same_seed__same_weights() -> None:
    arms = [VariantSummary.binary(100, 5), VariantSummary.binary(100, 8)]
    first = stats.thompson_weights(arms, seed=42, draws=500)
    assert first == stats.thompson_weights(arms, seed=42, draws=500)


def test_thompson_weights__floor_too_high_for_arm_count__raises() -> None:
    arms = [VariantSummary.binary(10, 1)] * 3
    with pytest.raises(ValueError):
        stats.thompson_weights(arms, min_share=0.4)


def test_named_api__compare_srm_sample_stats__match_the_engine():
    # Given the small API over the same sums as the full engine
    control = stats.SampleStats(1000, 100, 100)
    treatment = stats.SampleStats(1000, 130, 130)
    assert control.kind == "binary" and stats.SampleStats(10, 5.5, 9.1).kind == "continuous"
    # When compared relatively and absolutely
    relative = stats.compare(control, treatment)
    absolute = stats.compare(control, treatment, difference="absolute")
    full = stats.frequentist_test(control, treatment)
    welch = stats.welch_t_test(control, treatment)
    # Then the numbers are the engine's
    assert (relative.lift, relative.ci_low, relative.ci_high, relative.p_value) == (
        full.estimate,
        full.ci_low,
        full.ci_high,
        full.p_value,
    )
    assert (absolute.lift, absolute.p_value) == (welch.difference, welch.p_value)
    zero = stats.compare(stats.SampleStats(100, 0, 0), treatment)
    assert zero.lift is None and zero.reason
    assert stats.srm_p_value([500, 500], [0.5, 0.5]) == pytest.approx(1.0)
    assert stats.srm_p_value([600, 400], [0.5, 0.5]) < 0.001
