from __future__ import annotations

from django.apps import AppConfig


class EsmsCallbacksConfig(AppConfig):
    name = "esms_callbacks.contrib.django"
    label = "esms_callbacks"  # `django` would read oddly in the admin and in migrations
    verbose_name = "eSMS ZNS statuses"
    default_auto_field = "django.db.models.BigAutoField"
