"""The decision engine: the hottest path. ``decide`` reads as the list of its stages
(``stages``), each a plain function over one decision's context (``context.Decision``):

load (consent, signals, attributes, holdout, counters) → per slot: candidates → filters →
experiments and rollouts → stickiness → budget, rule or model → explain → apply and log.

Given a visitor, their session and the slots a page asks for, each slot gets an answer: its
default when nothing applies, when the visitor has not consented to personalization, is in
the holdout, or when anything fails. Candidates come from the compiled rule set; cooldowns,
frequency caps and the session budget filter them; priority (then key) resolves each slot;
session stickiness keeps what a slot already showed (a sticky repeat, marked
``"sticky": true`` in the answer's source: not a new application, so no cap, cooldown or
budget unit counts it, and not listed as suppressed). Every decision is logged — defaults
included — with the signals it read, the consent record in force and every suppressed
candidate with its reason. An adjustment that cannot be logged is not made.

The visitor's state and the log sit behind one interface (``state.VisitorState``: Redis or
the database); a caller may pass its own (``state=``) and rule set (``ruleset=``) — the
seams the benchmarks use.
"""

import logging
import uuid
from datetime import datetime

from django.db import DatabaseError
from django.utils import timezone

from ..exceptions import ApplicationError
from ..models import Property, Slot
from ..ruleset import RuleSet, ruleset_for
from . import stages
from .answers import DecideRequest, DecisionResult, SlotAnswer
from .context import Decision
from .state import VisitorState

logger = logging.getLogger(__name__)


def decide(
    prop: Property,
    request: DecideRequest,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    state: VisitorState | None = None,
    ruleset: RuleSet | None = None,
) -> DecisionResult:
    """Decide and log. ``dry_run`` (the admin's "test against a visitor") changes nothing,
    logs nothing and explains every step in ``result.trace``.

    A slot always gets an answer (docs/CONTRACT.md): when anything inside fails — a bug, a model
    that cannot score, live content that cannot be read — every slot gets its default and
    the failure is logged. The database being down stays an error (a 503 with Retry-After),
    and so does a refused request."""
    now = now or timezone.now()
    try:
        d = start(prop, request, now, dry_run, state, ruleset)
        stages.honour_gpc(d)
        if stages.load_visitor(d):
            stages.load_counters(d)
            for slot_key in d.known:
                stages.resolve_slot(d, slot_key)
                stages.offer_live(d, slot_key)
            stages.explain_answers(d)
            stages.apply_and_log(d)
        d.result.personalized = any(not a.is_default for a in d.result.answers.values())
        return d.result
    except (DatabaseError, ApplicationError):
        raise
    except Exception as exc:
        logger.exception("decision for property %s failed; serving defaults", prop.pk)
        result = static_defaults(prop, request)
        if dry_run:
            result.trace.append(f"the engine failed ({type(exc).__name__}: {exc}): defaults")
        return result


def start(
    prop: Property,
    request: DecideRequest,
    now: datetime,
    dry_run: bool,
    state: VisitorState | None,
    ruleset: RuleSet | None,
) -> Decision:
    """The decision's context: the property's compiled rule set and the slots it knows."""
    ruleset = ruleset or ruleset_for(prop.pk)
    asked = list(dict.fromkeys(request.slots))
    result = DecisionResult(
        decision_id=uuid.uuid4(),
        personalized=False,
        answers={},
        suppressed=[],
        unknown_slots=[s for s in asked if s not in ruleset.slots],
    )
    return Decision(
        prop=prop,
        request=request,
        now=now,
        ruleset=ruleset,
        result=result,
        known=[s for s in asked if s in ruleset.slots],
        dry_run=dry_run,
        state=state,
        explain=result.trace.append if dry_run else None,
    )


def static_defaults(prop: Property, request: DecideRequest) -> DecisionResult:
    """Every known slot's default as stored (live content left empty); not logged. Read
    from the slots themselves, so this holds when compiling the rule set is what failed."""
    slots = list(dict.fromkeys(request.slots))
    defaults: dict[str, tuple[str, dict]] = {}
    for slot in Slot.objects.filter(property=prop, key__in=slots).prefetch_related("variants"):
        variant = next((v for v in slot.variants.all() if v.key == slot.default_variant), None)
        content: dict = {} if variant is None else dict(variant.content)
        if variant is not None and variant.strategy:
            content.update(strategy=variant.strategy, items=[])
        defaults[slot.key] = (slot.default_variant, content)
    return DecisionResult(
        decision_id=uuid.uuid4(),
        personalized=False,
        answers={k: SlotAnswer(k, *defaults[k]) for k in slots if k in defaults},
        suppressed=[],
        unknown_slots=[k for k in slots if k not in defaults],
        logged=False,
    )
