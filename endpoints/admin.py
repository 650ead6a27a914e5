from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from endpoints.models import Device, DeviceGroup, Endpoint, RemoteAccessSettings
from endpoints.revocation import revoke_device_credentials


@admin.register(DeviceGroup)
class DeviceGroupAdmin(GuardedModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]


class EndpointInline(admin.TabularInline):
    model = Endpoint
    # Secrets are write-only: they are set through the Remote access tab.
    fields = ["name", "protocol", "hostname", "port", "credentials_type", "username"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Device)
class DeviceAdmin(GuardedModelAdmin):
    list_display = ["name", "serial", "group", "is_online", "last_seen", "registered_at"]
    list_filter = ["is_online", "group"]
    search_fields = ["name", "serial"]
    fields = ["serial", "name", "group", "supported_operations", "is_online", "last_seen", "registered_at"]
    readonly_fields = ["is_online", "last_seen", "registered_at"]
    inlines = [EndpointInline]
    actions = ["revoke_credentials"]

    @admin.action(description="Revoke the credentials (the device must register again)", permissions=["change"])
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            revoke_device_credentials(device)
        self.message_user(request, f"Revoked the credentials of {queryset.count()} device(s).", messages.SUCCESS)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "device", "protocol", "hostname", "port", "credentials_type"]
    list_filter = ["protocol", "credentials_type"]
    search_fields = ["name", "hostname", "device__serial", "device__name"]
    fields = ["device", "name", "protocol", "hostname", "port", "credentials_type", "username",
              "public_key", "host_key"]


@admin.register(RemoteAccessSettings)
class RemoteAccessSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: object) -> bool:
        return not RemoteAccessSettings.objects.exists()

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
