"""The Django app of zodworker (``INSTALLED_APPS = [..., "zodworker.integrations.django"]``):
it brings the ``zodworker`` management command."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ZodworkerConfig"]


class ZodworkerConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    name = "zodworker.integrations.django"
    label = "zodworker"
    verbose_name = "zodworker"
