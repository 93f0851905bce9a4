from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from esms_callbacks.contrib.django.models import MessageStatus


@admin.register(MessageStatus)
class MessageStatusAdmin(admin.ModelAdmin):
    """Read-only: rows change only by the status events."""

    list_display = [
        "ref_id",
        "account",
        "oa_id",
        "status",
        "terminal",
        "send_status",
        "observed_at",
        "delivered_at",
        "source",
    ]
    list_filter = ["account", "oa_id", "status", "terminal", "observed_at"]
    date_hierarchy = "observed_at"
    search_fields = ["ref_id"]
    search_help_text = "a RefId (the SMSID eSMS gave), exactly"
    ordering = ["-observed_at"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[MessageStatus], search_term: str
    ) -> tuple[QuerySet[MessageStatus], bool]:
        # An exact match uses the ref_id index; a `contains` search would scan the table.
        term = search_term.strip()
        return (queryset.filter(ref_id=term) if term else queryset), False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))
