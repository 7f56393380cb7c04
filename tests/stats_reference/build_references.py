"""Build ``expected.json``: the public references' answers on fixed datasets.

``personalization/stats.py`` must agree with scipy, statsmodels and GrowthBook's
``gbstats`` to 4 decimals. gbstats pins numpy < 2 and pandas < 2, so it must not
enter the product's environment: this script makes a virtualenv of its own,
installs the references there at pinned versions, re-runs itself inside it and
writes ``expected.json`` beside this file. The file is committed; the product's
tests only read it and need none of these packages.

Rerun (needs Python 3.11 and access to PyPI; about a minute)::

    python3.11 tests/stats_reference/build_references.py
    # options: --venv DIR (default /tmp/gbstats-venv), --python EXE (default python3.11)

then review the diff of ``expected.json`` and run
``tests/personalization/experiments/test_stats.py``. To move
to another gbstats, change ``PINS`` below; gbstats's own source is the spec for
what it computes (``gbstats/frequentist/tests.py``, ``gbstats/bayesian/tests.py``,
``gbstats/models/statistics.py``).

Datasets are sufficient statistics. Continuous and CUPED ones are drawn from a
seeded numpy generator; per-user data is kept only long enough to sum it and to
cross-check scipy's summary-statistics t-test against its raw-data one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "expected.json"
DEFAULT_VENV = "/tmp/gbstats-venv"
PINS = [
    "gbstats==0.8.0",
    "numpy==1.26.4",
    "pandas==1.5.3",
    "scipy==1.17.1",
    "statsmodels==0.15.0",
]
ALPHA = 0.05

# name, kind, weights, variants: binary (users, conversions); continuous/CUPED are generated
BINARY_DATASETS: list[dict[str, Any]] = [
    {"name": "small", "variants": [(50, 7), (48, 13)]},
    {"name": "large", "variants": [(120000, 6000), (119500, 6310), (120400, 6150)]},
    {"name": "zero_conversion_treatment", "variants": [(1500, 30), (1480, 0)]},
    {"name": "zero_conversion_control", "variants": [(800, 0), (820, 5)]},
    {
        "name": "unequal_weights",
        "weights": [0.5, 0.25, 0.25],
        "variants": [(10210, 512), (4850, 270), (5120, 231)],
    },
    {"name": "srm_mismatch", "variants": [(10000, 500), (10500, 560)]},
]

P_VALUE_LISTS = [
    [0.01, 0.04, 0.03, 0.2],
    [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216],
    [0.02, 0.02, 0.5, 0.001],
    [0.9, 0.95, 0.99],
    [0.3],
]

POWER_CASES = [
    {"baseline_rate": 0.05, "mde_relative": 0.10, "power": 0.8, "alpha": 0.05, "variants": 2},
    {"baseline_rate": 0.05, "mde_relative": 0.10, "power": 0.8, "alpha": 0.05, "variants": 3},
    {"baseline_rate": 0.20, "mde_relative": 0.05, "power": 0.9, "alpha": 0.01, "variants": 2},
    {"baseline_rate": 0.01, "mde_relative": 0.20, "power": 0.8, "alpha": 0.05, "variants": 4},
    {"baseline_rate": 0.30, "mde_relative": -0.10, "power": 0.8, "alpha": 0.05, "variants": 2},
    {"baseline_rate": 0.50, "mde_relative": 0.50, "power": 0.95, "alpha": 0.10, "variants": 2},
]


def bootstrap(venv: str, python: str) -> None:
    """Create the reference venv if needed and rerun this script inside it."""
    vpython = Path(venv) / "bin" / "python"
    if not vpython.exists():
        subprocess.run([python, "-m", "venv", venv], check=True)
        subprocess.run(
            [str(vpython), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True
        )
    subprocess.run([str(vpython), "-m", "pip", "install", "--quiet", *PINS], check=True)
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run([str(vpython), __file__, "--compute"], check=True, env=env)


# ---------------------------------------------------------------------------
# Everything below runs inside the reference venv.
# ---------------------------------------------------------------------------


def generated_datasets() -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(20240611)
    out: list[dict[str, Any]] = []

    # Revenue per user: most users buy nothing, buyers spend a skewed amount.
    arms = []
    for n, rate, scale in [(2000, 0.10, 1.0), (2050, 0.11, 1.05), (1980, 0.10, 1.12)]:
        buys = rng.random(n) < rate
        arms.append(np.where(buys, rng.lognormal(3.0, 1.0, n) * scale, 0.0))
    out.append({"name": "continuous", "kind": "continuous", "raw": arms})

    arms = [rng.normal(10.0, 3.0, 12), rng.normal(12.5, 5.0, 15)]
    out.append({"name": "continuous_small", "kind": "continuous", "raw": arms})

    # CUPED: the pre-period value predicts the post-period one.
    arms, pre = [], []
    for n, effect in [(3000, 0.0), (3050, 1.5)]:
        x = rng.gamma(2.0, 5.0, n)
        arms.append(0.7 * x + rng.normal(5.0, 6.0, n) + effect)
        pre.append(x)
    out.append(
        {
            "name": "cuped_continuous",
            "kind": "continuous",
            "raw": arms,
            "pre": pre,
            "pre_kind": "continuous",
        }
    )

    # CUPED on a binary goal with a continuous covariate (past visits).
    arms, pre = [], []
    for n, boost in [(4000, 0.0), (4100, 0.012)]:
        visits = rng.poisson(3.0, n).astype(float)
        p = np.clip(0.02 + 0.015 * visits + boost, 0, 1)
        arms.append((rng.random(n) < p).astype(float))
        pre.append(visits)
    out.append(
        {
            "name": "cuped_binary",
            "kind": "binary",
            "raw": arms,
            "pre": pre,
            "pre_kind": "continuous",
        }
    )
    return out


def summarise(dataset: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    if "variants" in dataset:
        return [
            {"users": n, "sum": float(k), "sum_squares": float(k)} for n, k in dataset["variants"]
        ]
    rows = []
    for i, arm in enumerate(dataset["raw"]):
        row: dict[str, Any] = {
            "users": int(arm.size),
            "sum": float(arm.sum()),
            "sum_squares": float((arm * arm).sum()),
        }
        if "pre" in dataset:
            x = dataset["pre"][i]
            row["covariate"] = {
                "kind": dataset["pre_kind"],
                "sum": float(x.sum()),
                "sum_squares": float((x * x).sum()),
                "sum_products": float((arm * x).sum()),
            }
        rows.append(row)
    if dataset["kind"] == "binary":
        assert all(np.array_equal(a, a * a) for a in dataset["raw"])
    return rows


def raw_arrays(dataset: dict[str, Any]) -> list[Any]:
    import numpy as np

    if "raw" in dataset:
        return list(dataset["raw"])
    return [np.r_[np.ones(k), np.zeros(n - k)] for n, k in dataset["variants"]]


def scipy_welch(
    control: dict[str, Any], treatment: dict[str, Any], raw: list[Any]
) -> dict[str, Any]:
    import math

    from scipy import stats

    def mean_sd(s: dict[str, Any]) -> tuple[float, float, int]:
        n = s["users"]
        mean = s["sum"] / n
        var = (s["sum_squares"] - s["sum"] ** 2 / n) / (n - 1)
        return mean, math.sqrt(max(var, 0.0)), n

    mt, sdt, nt = mean_sd(treatment)
    mc, sdc, nc = mean_sd(control)
    res = stats.ttest_ind_from_stats(mt, sdt, nt, mc, sdc, nc, equal_var=False)
    vt, vc = sdt**2 / nt, sdc**2 / nc
    df = (vt + vc) ** 2 / (vt**2 / (nt - 1) + vc**2 / (nc - 1))
    width = stats.t.ppf(1 - ALPHA / 2, df) * math.sqrt(vt + vc)
    diff = mt - mc
    out = {
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "df": float(df),
        "difference": diff,
        "ci_low": float(diff - width),
        "ci_high": float(diff + width),
    }
    # The raw-data test (with its own CI) must tell the same story.
    raw_res = stats.ttest_ind(raw[1], raw[0], equal_var=False)
    ci = raw_res.confidence_interval(confidence_level=1 - ALPHA)
    for ours, theirs in [
        (out["p_value"], raw_res.pvalue),
        (out["ci_low"], ci.low),
        (out["ci_high"], ci.high),
    ]:
        assert abs(ours - float(theirs)) < 1e-9, (ours, theirs)
    return out


def gbstats_stat(kind: str, s: dict[str, Any], cuped: bool) -> Any:
    from gbstats.models.statistics import (
        ProportionStatistic,
        RegressionAdjustedStatistic,
        SampleMeanStatistic,
    )

    def base(k: str, n: int, total: float, squares: float) -> Any:
        if k == "binary":
            return ProportionStatistic(n=n, sum=total)
        return SampleMeanStatistic(n=n, sum=total, sum_squares=squares)

    post = base(kind, s["users"], s["sum"], s["sum_squares"])
    if not cuped:
        return post
    cov = s["covariate"]
    return RegressionAdjustedStatistic(
        n=s["users"],
        post_statistic=post,
        pre_statistic=base(cov["kind"], s["users"], cov["sum"], cov["sum_squares"]),
        post_pre_sum_of_products=cov["sum_products"],
        theta=0,
    )


def gbstats_results(
    kind: str, control: dict[str, Any], treatment: dict[str, Any], cuped: bool
) -> dict[str, Any]:
    from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
    from gbstats.frequentist.tests import (
        FrequentistConfig,
        SequentialConfig,
        SequentialTwoSidedTTest,
        TwoSidedTTest,
    )
    from gbstats.models.statistics import RegressionAdjustedStatistic

    def fresh() -> tuple[Any, Any]:
        # Tests write theta into the statistics they get: never share them.
        return gbstats_stat(kind, control, cuped), gbstats_stat(kind, treatment, cuped)

    def freq(res: Any) -> dict[str, Any]:
        return {
            "estimate": float(res.expected),
            "ci_low": float(res.ci[0]),
            "ci_high": float(res.ci[1]),
            "p_value": float(res.p_value),
            "error": res.error_message,
        }

    out: dict[str, Any] = {}
    for diff in ["relative", "absolute"]:
        for alpha in [0.05, 0.10]:
            suffix = "" if alpha == 0.05 else "_alpha10"
            a, b = fresh()
            test = TwoSidedTTest(a, b, FrequentistConfig(difference_type=diff, alpha=alpha))
            out[f"fixed_{diff}{suffix}"] = freq(test.compute_result())
            a, b = fresh()
            seq = SequentialTwoSidedTTest(a, b, SequentialConfig(difference_type=diff, alpha=alpha))
            assert seq.sequential_tuning_parameter == 5000
            out[f"sequential_{diff}{suffix}"] = freq(seq.compute_result())
        a, b = fresh()
        bayes = EffectBayesianABTest(a, b, EffectBayesianConfig(difference_type=diff))
        assert not bayes.prior_effect.proper
        res = bayes.compute_result()
        out[f"bayesian_{diff}"] = {
            "chance_to_win": float(res.chance_to_win),
            "expected": float(res.expected),
            "ci_low": float(res.ci[0]),
            "ci_high": float(res.ci[1]),
            "error": res.error_message,
        }
    if cuped:
        a, b = fresh()
        TwoSidedTTest(a, b)
        out["theta"] = float(a.theta) if isinstance(a, RegressionAdjustedStatistic) else 0.0
    return out


def compute() -> dict[str, Any]:
    import importlib.metadata
    import platform

    from gbstats.utils import check_srm
    from scipy import stats
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    datasets: list[dict[str, Any]] = []
    welch_p_values: list[float] = []
    all_sets = [dict(d, kind="binary") for d in BINARY_DATASETS] + generated_datasets()
    for spec in all_sets:
        summaries = summarise(spec)
        raw = raw_arrays(spec)
        users = [s["users"] for s in summaries]
        weights = spec.get("weights", [1.0] * len(summaries))
        total = sum(users)
        f_exp = [w / sum(weights) * total for w in weights]
        chi = stats.chisquare(users, f_exp)
        comparisons = []
        for i in range(1, len(summaries)):
            comp: dict[str, Any] = {
                "treatment": i,
                "scipy_welch": scipy_welch(summaries[0], summaries[i], [raw[0], raw[i]]),
                "gbstats": gbstats_results(spec["kind"], summaries[0], summaries[i], False),
            }
            welch_p_values.append(comp["scipy_welch"]["p_value"])
            if "pre" in spec:
                comp["gbstats_cuped"] = gbstats_results(
                    spec["kind"], summaries[0], summaries[i], True
                )
            comparisons.append(comp)
        datasets.append(
            {
                "name": spec["name"],
                "kind": spec["kind"],
                "weights": weights,
                "variants": summaries,
                "srm": {
                    "scipy_chisquare_statistic": float(chi.statistic),
                    "scipy_chisquare_p_value": float(chi.pvalue),
                    "gbstats_check_srm": float(check_srm(users, weights)),
                },
                "comparisons": comparisons,
            }
        )

    corrections = []
    for pvals in [*P_VALUE_LISTS, welch_p_values]:
        corrections.append(
            {
                "p_values": pvals,
                "holm": [float(x) for x in multipletests(pvals, method="holm")[1]],
                "bh": [float(x) for x in multipletests(pvals, method="fdr_bh")[1]],
            }
        )

    power = []
    for case in POWER_CASES:
        base = case["baseline_rate"]
        target = base * (1 + case["mde_relative"])
        h = abs(float(proportion_effectsize(target, base)))
        n = NormalIndPower().solve_power(
            effect_size=h,
            alpha=case["alpha"] / (case["variants"] - 1),
            power=case["power"],
            ratio=1.0,
            alternative="two-sided",
        )
        power.append(dict(case, effect_size=h, nobs1=float(n)))

    return {
        "generated_by": "tests/stats_reference/build_references.py",
        "versions": {
            name: importlib.metadata.version(name)
            for name in ["gbstats", "scipy", "statsmodels", "numpy", "pandas"]
        }
        | {"python": platform.python_version()},
        "alpha": ALPHA,
        "sequential_tuning_parameter": 5000,
        "datasets": datasets,
        "corrections": corrections,
        "power": power,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compute", action="store_true", help="internal: run inside the venv")
    parser.add_argument("--venv", default=DEFAULT_VENV)
    parser.add_argument("--python", default="python3.11")
    args = parser.parse_args()
    if not args.compute:
        bootstrap(args.venv, args.python)
        return
    result = compute()
    OUTPUT.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(f"wrote {OUTPUT} with gbstats {result['versions']['gbstats']}", file=sys.stderr)


if __name__ == "__main__":
    main()
