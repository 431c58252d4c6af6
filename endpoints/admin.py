"""Django admin: read-mostly views of the records, for looking things up and managing teams.

Every change to models, endpoints, deployments, keys and allowlists goes through the services (the
dashboard or the API), which write the audit log and tell the runtime. So those records are
read-only here; only teams and their members are edited in the admin.
"""

from django.contrib import admin
from django.db import models

from endpoints.models import (
    AllowlistEntry,
    ApiKey,
    ApiKeyRequest,
    AuditEvent,
    Deployment,
    Endpoint,
    MLModel,
    ModelVersion,
    Team,
)
from endpoints.services.audit import audit_actor


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name", "members__username"]
    filter_horizontal = ["members"]

    def save_related(self, request, form, formsets, change):
        # Membership changes are audited from m2m_changed; say who makes them.
        with audit_actor(request.user):
            super().save_related(request, form, formsets, change)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows a record without letting the admin change it behind the services' back."""

    # The read-only page still builds a form; say which scheme URLs without one get (Django 6's).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MLModel)
class MLModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "created_at"]
    search_fields = ["name"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "format", "estimator", "sha256", "created_at"]
    list_filter = ["format"]
    list_select_related = ["model"]
    search_fields = ["model__name", "sha256"]


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdmin):
    list_display = ["name", "access_mode", "url", "region"]
    list_filter = ["access_mode", "region"]
    search_fields = ["name"]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ["id", "endpoint", "model_version", "status", "traffic_percent", "created_at"]
    list_filter = ["status"]
    list_select_related = ["endpoint", "model_version__model"]
    search_fields = ["endpoint__name"]


@admin.register(ApiKeyRequest)
class ApiKeyRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "team", "endpoint", "status", "requested_at", "decided_by"]
    list_filter = ["status"]
    list_select_related = ["team", "endpoint", "decided_by"]
    exclude = ["sealed_secret"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["display_name", "prefix", "endpoint", "team", "expires_at", "revoked_at"]
    list_select_related = ["endpoint", "team"]
    search_fields = ["prefix", "display_name"]
    exclude = ["key_hash"]


@admin.register(AllowlistEntry)
class AllowlistEntryAdmin(ReadOnlyAdmin):
    list_display = ["cidr", "endpoint", "note", "added_by", "added_at"]
    list_select_related = ["endpoint", "added_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "target_repr"]
    list_filter = ["action"]
    search_fields = ["target_repr", "action"]
    date_hierarchy = "at"
