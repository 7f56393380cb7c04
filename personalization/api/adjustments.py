"""``POST /api/v1/adjustments``: the page reports a live plan entry that fired."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from ..decisions import firings
from . import serializers as s
from .validation import adjustment_body
from .views import ERRORS, StorefrontView


class AdjustmentsView(StorefrontView):
    @extend_schema(
        request=s.AdjustmentInputSerializer,
        responses={200: s.AdjustmentOutputSerializer, **ERRORS},
        summary="Report a live plan entry that fired in the page",
        description="Checks the entry's token, consent again, and counts the firing against "
        "the rule's cooldown and caps and the session's budget atomically, as decide does; "
        'logged in the decision log with trigger "page". Idempotent per decision and slot. '
        "A refusal (applied false, with its reason) tells the page to put the slot back.",
    )
    def post(self, request: Request) -> Response:
        report = adjustment_body(request.data)
        return Response(firings.fire(self.prop, report, gpc=self.gpc, ip=self.client_ip))
