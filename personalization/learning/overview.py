"""What the dashboards' Segments page shows of learning: each property's latest clustering
as a 2-D projection scatter coloured by cluster, and the model versions with their metrics.

Figures are Plotly JSON (``{"data", "layout"}``), embedded by the page with ``json_script``
and drawn by ``dashboard.js`` like every other chart there.
"""

from collections.abc import Iterable
from typing import Any

from ..charts import PALETTE, figure, text, texts
from ..models import ClusterRun, ModelVersion, Property, RunStatus

HEIGHT = 420


def cluster_scatter(run: ClusterRun) -> dict[str, Any]:
    """The run's projected sample, one trace per cluster, named by its description."""
    points = run.projection or {}
    clusters = {c.index: c for c in run.clusters.all()}
    traces = []
    for index, cluster in sorted(clusters.items()):
        picked = [i for i, c in enumerate(points.get("cluster", [])) if c == index]
        traces.append(
            {
                "type": "scatter",
                "x": [points["x"][i] for i in picked],
                "y": [points["y"][i] for i in picked],
                "mode": "markers",
                "marker": {"size": 6, "opacity": 0.7, "color": PALETTE[index % len(PALETTE)]},
                # a description names feature values (a UTM source, a referrer): visitor data
                "name": text(f"{index}: {cluster.description} ({cluster.share:.0%})"),
            }
        )
    explained = points.get("explained") or [0, 0]
    return figure(
        traces,
        height=HEIGHT,
        xaxis={"title": {"text": f"first principal axis ({explained[0]:.0%} of the variance)"}},
        yaxis={"title": {"text": f"second principal axis ({explained[1]:.0%})"}},
    )


def versions_figure(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Held-out AUC of every version, per model; a promoted version drawn filled."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["auc"] is not None:
            by_model.setdefault(row["model"], []).append(row)
    traces = [
        {
            "type": "scatter",
            "x": [r["version"] for r in items],
            "y": [r["auc"] for r in items],
            "mode": "lines+markers",
            "name": text(key),
            "marker": {
                "size": 10,
                "symbol": ["circle" if r["status"] == "promoted" else "circle-open" for r in items],
            },
            "text": texts(r["status"] for r in items),
        }
        for key, items in sorted(by_model.items())
    ]
    return figure(
        traces,
        height=HEIGHT,
        xaxis={"title": {"text": "version"}, "dtick": 1},
        yaxis={"title": {"text": "held-out AUC (0.5 = a constant guess)"}, "range": [0.4, 1.0]},
    )


def learning_overview(properties: Property | Iterable[Property]) -> dict[str, Any]:
    """Per property its latest finished clustering (scatter and clusters), and every model
    version with its metrics (table and AUC chart)."""
    props = [properties] if isinstance(properties, Property) else list(properties)
    ids = [p.pk for p in props]
    clusterings = []
    latest: dict[int, ClusterRun] = {}
    for run in (
        ClusterRun.objects.filter(property_id__in=ids, status=RunStatus.DONE)
        .select_related("property")
        .order_by("-created_at", "-pk")
    ):
        latest.setdefault(run.property_id, run)
    for run in latest.values():
        clusterings.append(
            {
                "run": run,
                "property": run.property.name,
                "script_id": f"figure-clusters-{run.pk}",
                "figure": cluster_scatter(run),
                "clusters": list(run.clusters.all().prefetch_related("segments")),
            }
        )
    rows = [
        {
            "property": v.model.property.name,
            "model": v.model.key,
            "version": v.version,
            "status": v.status,
            "status_label": v.get_status_display(),
            "created_at": v.created_at,
            "rows": v.rows,
            "positives": v.positives,
            "auc": None if v.auc is None else round(v.auc, 4),
            "baseline_auc": None if v.baseline_auc is None else round(v.baseline_auc, 4),
            "brier": None if v.brier is None else round(v.brier, 4),
            "message": v.message,
        }
        for v in ModelVersion.objects.filter(model__property_id__in=ids)
        .select_related("model__property")
        .defer("artifact")
        .order_by("model__property_id", "model__key", "version")
    ]
    return {
        "clusterings": clusterings,
        "versions": rows,
        "versions_figure": versions_figure(rows) if any(r["auc"] for r in rows) else None,
    }
