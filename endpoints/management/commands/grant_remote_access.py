from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from guardian.shortcuts import assign_perm, remove_perm

from endpoints.models import Device, DeviceGroup

CODENAMES = {"read": "remote_access_read", "admin": "remote_access_admin"}


class Command(BaseCommand):
    help = "Grant (or revoke) READ or ADMIN remote access on a device or a device group."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="user name")
        who.add_argument("--group", help="user group name")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--device", help="device serial")
        what.add_argument("--device-group", help="device group name")
        parser.add_argument("--level", choices=sorted(CODENAMES), required=True)
        parser.add_argument(
            "--revoke",
            action="store_true",
            help="take the level away; revoking read also revokes admin, which implies it",
        )

    def handle(self, *args: object, **options: str) -> None:
        if options["user"]:
            User = get_user_model()
            holder = User.objects.filter(**{User.USERNAME_FIELD: options["user"]}).first()
            holder_text = f"user {options['user']}"
        else:
            holder = Group.objects.filter(name=options["group"]).first()
            holder_text = f"group {options['group']}"
        if holder is None:
            raise CommandError(f"no {holder_text}")
        if options["device"]:
            target = Device.objects.filter(serial=options["device"]).first()
            target_text = f"device {options['device']}"
        else:
            target = DeviceGroup.objects.filter(name=options["device_group"]).first()
            target_text = f"device group {options['device_group']}"
        if target is None:
            raise CommandError(f"no {target_text}")

        level = options["level"]
        if options["revoke"]:
            levels = ["read", "admin"] if level == "read" else ["admin"]
            for name in levels:
                remove_perm(CODENAMES[name], holder, target)
            self.stdout.write(f"Revoked {' and '.join(l.upper() for l in levels)} on {target_text} from {holder_text}.")
        else:
            assign_perm(CODENAMES[level], holder, target)
            self.stdout.write(f"Granted {level.upper()} on {target_text} to {holder_text}.")
