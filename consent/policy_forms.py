"""The consent-policy form's purposes: rows of key, title and text, not a JSON box.

A new version starts from the property's current one (``ConsentPolicyAdmin`` fills the
rows in), so an officer or marketer edits wording, adds a purpose in one of the blank rows
or ticks *remove* on one they added before. The built-in purposes are always there: their
keys cannot be edited and they have no *remove* box. Every row is checked on its own, and
the whole list by ``purposes_validate`` (the service the API and the admin share).
"""

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .exceptions import DomainError
from .services import REQUIRED_PURPOSES, purposes_validate

BLANK_ROWS = 2
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
MAX_ROWS = 50
FIELDS = ("key", "title", "text")
JURISDICTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}")


def _rows_from(value: Any) -> list[dict[str, Any]]:
    """Whatever the field holds (a list from the model or a POST, JSON text) as rows."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    rows = []
    for item in value:
        if isinstance(item, dict):
            rows.append(
                {
                    **{name: str(item.get(name) or "") for name in FIELDS},
                    "remove": bool(item.get("remove")),
                }
            )
    return rows


class PurposesWidget(forms.Widget):
    """One table row per purpose (inputs ``<name>-<i>-key|title|text|remove``), plus blank
    rows for new purposes; ``<name>-rows`` says how many rows were rendered."""

    template_name = "consent/widgets/purposes.html"

    class Media:
        css = {"all": ["consent/privacy.css"]}
        js = ["consent/policy_form.js"]

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        rows = _rows_from(value)
        rows += [{"key": "", "title": "", "text": "", "remove": False}] * BLANK_ROWS
        context["widget"]["rows"] = [
            {
                **row,
                "index": i,
                "number": i + 1,
                "prefix": f"{name}-{i}",
                "built_in": row["key"] in REQUIRED_PURPOSES,
            }
            for i, row in enumerate(rows)
        ]
        context["widget"]["count"] = len(rows)
        return context

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        if f"{name}-rows" not in data:
            # Not posted as rows: JSON text (an API-style client, or an old form)
            return data.get(name)
        try:
            count = min(int(data.get(f"{name}-rows", 0)), MAX_ROWS)
        except (TypeError, ValueError):
            count = 0
        return [
            {
                "key": (data.get(f"{name}-{i}-key") or "").strip(),
                "title": (data.get(f"{name}-{i}-title") or "").strip(),
                "text": (data.get(f"{name}-{i}-text") or "").strip(),
                "remove": bool(data.get(f"{name}-{i}-remove")),
            }
            for i in range(count)
        ]

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return f"{name}-rows" not in data and name not in data

    def id_for_label(self, id_: str) -> str:
        return f"{id_}-0-key" if id_ else id_


class PurposesField(forms.Field):
    widget = PurposesWidget
    default_error_messages = {"required": "A policy lists at least one purpose."}

    def to_python(self, value: Any) -> list[dict[str, str]]:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except ValueError as exc:
                raise ValidationError("The purposes could not be read.") from exc
        if not isinstance(value, list):
            raise ValidationError("The purposes could not be read.")
        errors: list[ValidationError] = []
        kept: list[dict[str, str]] = []
        seen: set[str] = set()
        for number, row in enumerate(value, start=1):
            if not isinstance(row, dict):
                errors.append(ValidationError(f"Row {number} could not be read."))
                continue
            key = str(row.get("key") or "").strip()
            title = str(row.get("title") or "").strip()
            text = str(row.get("text") or "").strip()
            if not (key or title or text):
                continue  # a blank row left for new purposes
            if row.get("remove"):
                if key in REQUIRED_PURPOSES:
                    errors.append(
                        ValidationError(f"Row {number}: {key} is built in and cannot be removed.")
                    )
                continue
            label = f"Row {number}" + (f" ({key})" if key else "")
            if not key:
                errors.append(ValidationError(f"{label}: give the purpose a key."))
            elif not KEY_PATTERN.match(key):
                errors.append(ValidationError(f"{label}: a key holds only letters, digits and _."))
            elif key in seen:
                errors.append(ValidationError(f"{label}: this key is already listed above."))
            if not text:
                errors.append(ValidationError(f"{label}: give the text shown to visitors."))
            seen.add(key)
            kept.append({"key": key, "title": title or key, "text": text})
        missing = sorted(REQUIRED_PURPOSES - seen)
        if missing and not errors:
            errors.append(
                ValidationError(
                    f"The built-in purposes stay in every version; missing: {', '.join(missing)}."
                )
            )
        if errors:
            raise ValidationError(errors)
        return kept

    def validate(self, value: Any) -> None:
        super().validate(value)
        try:
            purposes_validate(value)
        except DomainError as exc:
            raise ValidationError(exc.message) from exc

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != _rows_from(initial)
        except ValidationError:
            return True


class JurisdictionsField(forms.CharField):
    """Jurisdiction codes separated by commas (``EU, US-CA``); a JSON list is read too."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = (super().to_python(value) or "").strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise ValidationError("Codes separated by commas, e.g. EU, US-CA.") from exc
            if not isinstance(parsed, list) or not all(isinstance(j, str) for j in parsed):
                raise ValidationError("Codes separated by commas, e.g. EU, US-CA.")
            codes = [j.strip() for j in parsed]
        else:
            codes = [j.strip() for j in text.split(",")]
        codes = [c for c in codes if c]
        bad = [c for c in codes if not JURISDICTION.fullmatch(c)]
        if bad:
            raise ValidationError(f"Not a jurisdiction code: {', '.join(bad)} (e.g. EU, US-CA).")
        return list(dict.fromkeys(codes))
