"""Staff-side learning in the admin (no browser): runs, adoption, training, refusals."""

import pytest
from django.test import Client

from personalization.learning import clustering
from personalization.models import ClusterRun, ModelVersion, Rule, Segment
from personalization.permissions import ANALYSTS, MARKETING
from tests.learning import cta_model, log_answers, planted_visitors
from tests.targeting import slot


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def run_form(shop, **overrides):
    data = {
        "property": shop.prop.pk,
        "window_days": 30,
        "k_min": 2,
        "k_max": 4,
        "drift_share": 0.1,
        "drift_centroid": 1.0,
        "clusters-TOTAL_FORMS": 0,
        "clusters-INITIAL_FORMS": 0,
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"k_min": 5, "k_max": 3}, "The k range 5–3 is empty."),
        ({"k_max": 40}, "At most 20 clusters"),
        ({}, "clustering needs at least 10"),
    ],
)
def test_cluster_run_admin__bad_input__clear_message_nothing_queued(
    shop, staff, overrides, message
):
    # Given a marketer and a property with no visitors yet
    user = staff(MARKETING, shop.prop)
    # When they ask for a clustering run with bad settings (or too little data)
    response = login(user).post(
        "/admin/personalization/clusterrun/add/", run_form(shop, **overrides)
    )
    # Then the form says why, and no run is recorded
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ClusterRun.objects.exists()


def test_cluster_run_admin__add_then_adopt__run_progress_and_segment(shop, staff, consent):
    # Given planted visitors and a marketer
    planted_visitors(shop.prop, consent, per_persona=8)
    user = staff(MARKETING, shop.prop)
    client = login(user)
    # When they add a run  Then it is recorded (and queued for the worker)
    response = client.post("/admin/personalization/clusterrun/add/", run_form(shop))
    assert response.status_code == 302, response.content.decode()[:2000]
    run = ClusterRun.objects.get()
    clustering.cluster_run_execute(run_id=run.pk)  # what the worker does
    # and its page shows the progress and the clusters in words
    page = client.get(f"/admin/personalization/clusterrun/{run.pk}/change/").content.decode()
    assert "<progress" in page and "Done" in page
    assert "mostly mobile" in page
    # When they adopt a cluster with the action
    cluster = run.clusters.first()
    response = client.post(
        "/admin/personalization/cluster/",
        {"action": "adopt", "_selected_action": [cluster.pk]},
        follow=True,
    )
    # Then the segment exists and decides by nearest centroid
    segment = Segment.objects.get(cluster=cluster)
    assert segment.key == f"cluster-{run.pk}-{cluster.index}"
    assert "nearest centroid" in response.content.decode()


def test_model_admin__train_without_data__refused_with_message(shop, staff):
    # Given a model whose slot has no logged answers
    model = cta_model(shop.prop)
    user = staff(MARKETING, shop.prop)
    # When "Train model" is chosen
    response = login(user).post(
        "/admin/personalization/propensitymodel/",
        {"action": "train", "_selected_action": [model.pk]},
        follow=True,
    )
    # Then the admin says why and no version is started
    assert "Only 0 logged answers" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_model_admin__train_with_data__version_queued_and_listed(shop, staff, consent):
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 60)
    user = staff(MARKETING, shop.prop)
    client = login(user)
    response = client.post(
        "/admin/personalization/propensitymodel/",
        {"action": "train", "_selected_action": [model.pk]},
        follow=True,
    )
    assert "v1 queued for training" in response.content.decode()
    version = ModelVersion.objects.get(model=model)
    page = client.get(f"/admin/personalization/propensitymodel/{model.pk}/change/")
    assert page.status_code == 200 and "<progress" in page.content.decode()
    assert version.version == 1


def test_model_admin__analyst__cannot_train(shop, staff, consent):
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 60)
    user = staff(ANALYSTS, shop.prop)
    response = login(user).post(
        "/admin/personalization/propensitymodel/",
        {"action": "train", "_selected_action": [model.pk]},
    )
    assert response.status_code in (200, 302, 403)
    assert not ModelVersion.objects.exists()


def test_rule_admin__unknown_model_key_in_condition__refused_with_message(shop, staff):
    # Given a property with the model "cta-click" only
    cta_model(shop.prop)
    headline = slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    user = staff(MARKETING, shop.prop)
    data = {
        "property": shop.prop.pk,
        "key": "by-score",
        "slot": headline.pk,
        "variant": headline.variants.get(key="short").pk,
        "condition": '{"model.cta-clik.score": {"$gt": 0.7}}',
        "priority": 100,
        "status": "active",
        "cooldown_seconds": 0,
        "min_sample": 200,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    # When a rule reads a model key that does not exist
    response = login(user).post("/admin/personalization/rule/add/", data)
    # Then the admin refuses it and names the models there are
    body = response.content.decode()
    assert response.status_code == 200
    assert "model &quot;cta-clik&quot; does not exist" in body and "cta-click" in body
    assert not Rule.objects.exists()
    # and the right key is accepted
    data["condition"] = '{"model.cta-click.score": {"$gt": 0.7}}'
    assert login(user).post("/admin/personalization/rule/add/", data).status_code == 302


def test_segments_page__clusters_and_model_versions__scatter_and_metrics(shop, staff, consent):
    # Given a finished clustering and a trained model version on the property
    planted_visitors(shop.prop, consent, per_persona=8)
    run = clustering.cluster_run_create(property_id=shop.prop.pk, k_min=3, k_max=3)
    clustering.cluster_run_execute(run_id=run.pk)
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 120)
    from personalization.learning import propensity

    version = propensity.version_train(version_id=propensity.version_start(model=model).pk)
    # When an analyst opens the Segments page
    response = login(staff(ANALYSTS, shop.prop)).get("/dashboard/segments/")
    body = response.content.decode()
    # Then the clusters are a scatter (Plotly JSON, one trace per cluster) with their words,
    # and the model's versions are listed with their held-out metrics
    assert response.status_code == 200
    assert f'data-figure="figure-clusters-{run.pk}"' in body
    assert f'id="figure-clusters-{run.pk}"' in body and '"type": "scatter"' in body.replace(
        '"type":"scatter"', '"type": "scatter"'
    )
    assert "mostly mobile" in body
    assert "cta-click" in body and f"{version.auc:.4f}".rstrip("0") in body


def test_segments_page__nothing_learned__readable_empty_states(shop, staff):
    response = login(staff(ANALYSTS, shop.prop)).get("/dashboard/segments/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "No clustering has finished" in body and "No propensity model" in body


def test_experiment_form__unknown_model_key_in_condition__refused_with_message(shop):
    from django.forms.models import model_to_dict

    from personalization.admin.experiments import ExperimentForm
    from personalization.models import Experiment

    # Given a property with the model "cta-click" only, and an experiment on its CTA
    cta = cta_model(shop.prop).slot
    exp = Experiment(
        property=shop.prop,
        key="cta-test",
        slot=cta,
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
    )
    data = {k: v for k, v in model_to_dict(exp).items() if v is not None}
    del data["variants"]  # the form takes them as rows of variant and weight
    for i, v in enumerate(exp.variants):
        data[f"variants-{i}-variant"] = v["variant"]
        data[f"variants-{i}-weight"] = str(v["weight"])
    # When its targeting condition reads a model key that does not exist
    data["condition"] = '{"model.cta-clik.score": {"$gt": 0.7}}'
    form = ExperimentForm(data=data)
    # Then the form refuses it on the condition and names the models there are
    assert not form.is_valid()
    message = " ".join(form.errors.get("condition", []))
    assert 'model "cta-clik" does not exist' in message and "cta-click" in message
    # and the right key passes
    data["condition"] = '{"model.cta-click.score": {"$gt": 0.7}}'
    form = ExperimentForm(data=data)
    assert form.is_valid(), form.errors
