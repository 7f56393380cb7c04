"""What every consent model shares: append-only rows refuse edits and deletes."""

from typing import Any

from django.db import models


class ImmutableError(Exception):
    pass


class AppendOnlyModel(models.Model):
    """A row written once: proof and audit records are never edited or deleted one by one."""

    immutable_message = "this record is append-only"

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ImmutableError(self.immutable_message)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableError(self.immutable_message)
