"""Static files as production serves them: collected under hashed names, gzip-compressed,
cached for a year (plotly.js alone is 4.8 MB: the first dashboard load must not fetch that)."""

import re
from pathlib import Path
from typing import Any

from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from personalization.permissions import ANALYSTS

ONE_YEAR = 365 * 24 * 3600


def test_static__collected_in_production__plotly_hashed_compressed_and_cached_for_a_year(
    shop: Any, staff: Any, settings: Any, tmp_path: Path
) -> None:
    # Given the static files collected as the README's production steps do
    settings.STATIC_ROOT = str(tmp_path / "static")
    call_command("collectstatic", "--noinput", verbosity=0)
    Group.objects.get_or_create(name=ANALYSTS)
    client = Client()
    client.force_login(staff(ANALYSTS, shop.prop))
    # When an analyst opens a dashboard
    page = client.get("/dashboard/")
    assert page.status_code == 200
    src = re.search(r'<script src="(/static/dashboard/plotly\.min\.[0-9a-f]{12}\.js)"', page.text)
    # Then the page links plotly.js under its content hash
    assert src, page.text[:2000]
    # And the browser gets it gzip-compressed, cacheable for a year
    plotly = Client().get(src.group(1), HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert plotly.status_code == 200
    assert plotly["Content-Encoding"] == "gzip"
    body = b"".join(plotly.streaming_content)
    raw = (tmp_path / "static" / src.group(1).removeprefix("/static/")).stat().st_size
    assert len(body) < raw / 2, (len(body), raw)
    cache_control = plotly["Cache-Control"]
    assert "immutable" in cache_control
    assert int(re.search(r"max-age=(\d+)", cache_control).group(1)) >= ONE_YEAR


def test_static__not_collected__pages_link_plain_names(shop: Any, staff: Any) -> None:
    # Given a process that never ran collectstatic (the suite, a quick runserver)
    Group.objects.get_or_create(name=ANALYSTS)
    client = Client()
    client.force_login(staff(ANALYSTS, shop.prop))
    # When a dashboard renders in production mode
    page = client.get("/dashboard/")
    # Then it renders, linking the plain names the static finders serve
    assert page.status_code == 200
    assert '<script src="/static/dashboard/plotly.min.js"' in page.text
