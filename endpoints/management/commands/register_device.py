from django.core.management.base import BaseCommand, CommandError, CommandParser

from endpoints.forms import DeviceRegistrationForm
from endpoints.models import DeviceGroup


class Command(BaseCommand):
    help = "Create a device awaiting its agent and print its one-time registration password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serial", help="the device's serial (external id)")
        parser.add_argument("--name", default="", help="display name (default: the serial)")
        parser.add_argument("--group", default="", help="name of an existing device group")
        parser.add_argument(
            "--one-time-password", default="", help="8 to 32 characters (default: generated)"
        )

    def handle(self, *args: object, **options: str) -> None:
        data = {
            "serial": options["serial"],
            "name": options["name"],
            "one_time_password": options["one_time_password"],
        }
        if options["group"]:
            group = DeviceGroup.objects.filter(name=options["group"]).first()
            if group is None:
                raise CommandError(f"no device group named {options['group']!r}")
            data["group"] = str(group.pk)
        form = DeviceRegistrationForm(data)
        if not form.is_valid():
            raise CommandError(_errors(form.errors))
        device, otp = form.save()
        self.stdout.write(f"Device {device.serial} awaits its agent.")
        self.stdout.write(f"One-time password: {otp}")
        self.stdout.write(f"Valid until {device.otp_expires_at:%Y-%m-%d %H:%M %Z}, usable once.")


def _errors(errors: dict) -> str:
    return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
