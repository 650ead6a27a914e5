from django.contrib import admin

from sessions.models import Operation


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    """The audit trail: readable, never written or deleted through the admin."""

    list_display = ["pk", "created", "device_serial", "endpoint_name", "protocol", "username",
                    "status", "failure_reason", "ended"]
    list_filter = ["status", "protocol"]
    search_fields = ["device_serial", "endpoint_name", "username", "hostname"]
    date_hierarchy = "created"

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
