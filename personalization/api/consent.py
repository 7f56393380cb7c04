"""consent's storefront endpoints (``consent/api/views.py``) behind the storefront's keys.

consent imports nothing of personalization (pyproject's import contracts) and the API keys
are personalization's, so the endpoints' logic, serializers and OpenAPI description live in
consent/api/ and each is bound here: the keys' authentication and permissions
(``StorefrontView``; a secret key where the data is a visitor's own) and, for the consent
choice, the JSON Schema checks every storefront body shares. The URLs stay in ``urls.py``.

consent's view comes first in each: its docstring is the operation's description, as before."""

from typing import Any

from consent.api import views as consent

from .permissions import SecretKey
from .validation import consent_body
from .views import StorefrontView


class ConsentPolicyView(consent.ConsentPolicyView, StorefrontView):
    pass


class ConsentView(consent.ConsentView, StorefrontView):
    def choice(self, body: Any) -> dict[str, Any]:
        return consent_body(body)


class ConsentDetailView(consent.ConsentDetailView, StorefrontView):
    pass


class PrivacyRequestsView(consent.PrivacyRequestsView, StorefrontView):
    permission_classes = [SecretKey]


class PrivacyRequestDetailView(consent.PrivacyRequestDetailView, StorefrontView):
    permission_classes = [SecretKey]


class PrivacyExportView(consent.PrivacyExportView, StorefrontView):
    permission_classes = [SecretKey]
