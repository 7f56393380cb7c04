"""An OpenFeature hook for Python clients of OFREP: outcomes attached to their decisions.

OpenFeature's ``track()`` has no OFREP endpoint. Every OFREP evaluation here is a logged
decision whose id comes back in the flag's metadata (``decision_id``); an outcome — a click,
an add to cart, a purchase — is an event sent to ``POST /api/v1/events`` naming that id, so
that experiments, guardrails and dashboards attribute it to the adjustment that was shown.
This hook remembers, per visitor and flag, the decision of the latest evaluation, and
``outcome()`` sends the event::

    outcomes = DecisionOutcomes("http://127.0.0.1:8000", key=pk)
    client = api.get_client()
    client.add_hooks([outcomes])
    headline = client.get_object_value("headline", {}, EvaluationContext("v-123", {...}))
    …
    outcomes.outcome("headline", "v-123", "click", {"element_id": "headline"})

It is for the storefront's side and is not used by the product itself: the product has no
dependency on the OpenFeature SDK (here a test-only one); this module takes the SDK's
``Hook`` class when the SDK is installed and sends events with the standard library.
"""

import json
import threading
import urllib.request
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openfeature.hook import Hook as _Hook
else:  # the product itself never installs the SDK
    try:
        from openfeature.hook import Hook as _Hook
    except ImportError:  # pragma: no cover - a client using the hook has the SDK
        _Hook = object

# Decisions remembered (visitor and flag), the oldest forgotten first.
MAX_REMEMBERED = 10_000


class DecisionOutcomes(_Hook):
    """Remembers each evaluation's decision; ``outcome()`` sends an event naming it."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 5.0) -> None:
        self.events_url = base_url.rstrip("/") + "/api/v1/events"
        self.key = key
        self.timeout = timeout
        self._decisions: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def after(self, hook_context: Any, details: Any, hints: Any) -> None:
        """After an evaluation: remember its decision (none for a failed one)."""
        decision_id = (details.flag_metadata or {}).get("decision_id")
        context = hook_context.evaluation_context
        visitor_id = context.targeting_key if context is not None else None
        if not decision_id or not visitor_id:
            return
        session_id = str(context.attributes.get("session_id") or "")
        with self._lock:
            self._decisions[(visitor_id, hook_context.flag_key)] = (decision_id, session_id)
            self._decisions.move_to_end((visitor_id, hook_context.flag_key))
            while len(self._decisions) > MAX_REMEMBERED:
                self._decisions.popitem(last=False)

    def decision(self, flag_key: str, visitor_id: str) -> str | None:
        """The id of the decision the visitor's latest evaluation of the flag came from."""
        with self._lock:
            found = self._decisions.get((visitor_id, flag_key))
        return found[0] if found else None

    def outcome(
        self,
        flag_key: str,
        visitor_id: str,
        event_type: str = "conversion",
        properties: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Send an event of ``event_type`` (any event type the property knows, with its
        ``properties``) for the visitor, naming the decision their flag came from; the
        session is the evaluation's ``session_id`` unless given. Returns the events
        endpoint's answer (``accepted``, ``dropped_no_consent``, …)."""
        with self._lock:
            decision_id, evaluated_in = self._decisions.get((visitor_id, flag_key), (None, ""))
        session = session_id or evaluated_in
        if not session:
            raise ValueError("No session: evaluate with a session_id, or pass session_id=.")
        event: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "type": event_type,
            "visitor_id": visitor_id,
            "session_id": session,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "properties": properties or {},
        }
        if decision_id:
            event["decision_id"] = decision_id
        request = urllib.request.Request(  # noqa: S310 (the app's own URL, http or https)
            self.events_url,
            data=json.dumps({"events": [event]}).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        return answer
