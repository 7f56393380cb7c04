"""The product's name on staff pages outside the admin (dashboards, consent histories).

The admin's own pages get ``site_header`` and ``site_title`` from ``admin.site``'s context;
``templates/base.html`` renders without it, so these tags read the same two values (set
once on ``admin.site``), and a staff page never falls back to "Django administration".
"""

from django import template
from django.contrib import admin

register = template.Library()


@register.simple_tag
def site_header() -> str:
    return str(admin.site.site_header)


@register.simple_tag
def site_title() -> str:
    return str(admin.site.site_title)
