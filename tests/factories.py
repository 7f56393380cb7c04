"""factory_boy factories for the tests' data. Where staff or a storefront would go through
a service (a property set up with its policy and keys, a rule saved with its version and
audit entry, a consent recorded), the factory calls that same service."""

from typing import Any

import factory
from django.utils import timezone

from consent.services import consent_record
from personalization import visitor_state
from personalization.models import Goal, Property, Rule, Session, Slot, Variant, Visitor
from personalization.services.properties import property_create
from personalization.services.rules import rule_save

ALL_PURPOSES = {"analytics": True, "personalization": True, "granular_tracking": True}


class PropertyFactory(factory.django.DjangoModelFactory):
    """A property through ``property_create`` (its consent policy and, unless
    ``with_keys=False``, one key of each kind: the raw values in ``raw_keys``)."""

    class Meta:
        model = Property

    name = factory.Sequence(lambda n: f"Shop {n}")
    origins = factory.LazyFunction(lambda: ["https://shop.example"])

    @classmethod
    def _create(cls, model_class: type[Property], *args: Any, **kwargs: Any) -> Property:
        prop, keys = property_create(**kwargs)
        prop.raw_keys = keys  # type: ignore[attr-defined]
        return prop


class SlotFactory(factory.django.DjangoModelFactory):
    """A slot with its default variant (content ``{"text": "<key> default"}``) and, from
    ``variants`` (key → content), the others."""

    class Meta:
        model = Slot
        skip_postgeneration_save = True  # the hook adds variants; the slot is saved already

    property = factory.SubFactory(PropertyFactory)
    key = factory.Sequence(lambda n: f"slot-{n}")
    default_variant = "default"

    @factory.post_generation
    def variants(self, create: bool, extracted: dict[str, dict] | None, **kwargs: Any) -> None:
        if not create:
            return
        VariantFactory(slot=self, key=self.default_variant, content={"text": f"{self.key} default"})
        for key, content in (extracted or {}).items():
            VariantFactory(slot=self, key=key, content=content)


class VariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variant

    slot = factory.SubFactory(SlotFactory)
    key = factory.Sequence(lambda n: f"variant-{n}")
    content = factory.LazyFunction(dict)


class RuleFactory(factory.django.DjangoModelFactory):
    """An active rule (unless told otherwise) saved through ``rule_save``: its first
    version and audit entry written as staff's would be."""

    class Meta:
        model = Rule

    property = factory.LazyAttribute(lambda o: o.slot.property)
    key = factory.Sequence(lambda n: f"rule-{n}")
    slot = factory.SubFactory(SlotFactory)
    variant = factory.LazyAttribute(lambda o: Variant.objects.get(slot=o.slot, key="default"))
    condition = factory.LazyFunction(dict)
    status = "active"

    @classmethod
    def _create(cls, model_class: type[Rule], *args: Any, **kwargs: Any) -> Rule:
        return rule_save(rule=model_class(*args, **kwargs))


class GoalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Goal

    property = factory.SubFactory(PropertyFactory)
    key = factory.Sequence(lambda n: f"goal-{n}")


class VisitorFactory(factory.django.DjangoModelFactory):
    """A visitor seen now, with a fresh live-signal state unless given one."""

    class Meta:
        model = Visitor

    property = factory.SubFactory(PropertyFactory)
    visitor_id = factory.Sequence(lambda n: f"v-{n}")
    first_seen = factory.LazyFunction(timezone.now)
    last_seen = factory.LazyAttribute(lambda o: o.first_seen)
    state = factory.LazyFunction(visitor_state.visitor_new)


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    visitor = factory.SubFactory(VisitorFactory)
    property = factory.LazyAttribute(lambda o: o.visitor.property)
    session_id = factory.LazyAttribute(lambda o: f"s-{o.visitor.visitor_id}")
    started_at = factory.LazyFunction(timezone.now)
    last_event_at = factory.LazyAttribute(lambda o: o.started_at)
    state = factory.LazyAttribute(lambda o: visitor_state.session_new(o.started_at, {}))


class ConsentFactory(factory.Factory):
    """A visitor's consent recorded through ``consent_record`` (a banner choice of policy
    version 1, every purpose granted unless told otherwise); builds the effective consent."""

    class Meta:
        model = dict  # the service builds the record; the factory answers what it returns

    property_id = factory.LazyFunction(lambda: PropertyFactory().pk)
    visitor_id = factory.Sequence(lambda n: f"v-{n}")
    policy_version = 1
    purposes = factory.LazyFunction(lambda: dict(ALL_PURPOSES))
    method = "banner"

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        return consent_record(**kwargs)
