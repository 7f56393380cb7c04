"""Template filters for links to pages a user may open."""

from typing import Any

from django import template

from consent.tenancy import properties_for

register = template.Library()


@register.filter
def holds_on_any_property(user: Any, codename: str) -> bool:
    """``{% if request.user|holds_on_any_property:"view_dashboards" %}``: the same test the
    dashboard views apply (dashboard.views.property_permission_required)."""
    return properties_for(user, codename).exists()
