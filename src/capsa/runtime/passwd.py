"""``/etc/passwd`` and ``/etc/group`` for inside the container.

As Apptainer does: the image's file with the caller's entry replaced or
appended (home pointing where it is mounted inside), and the caller added
as a member of each of their groups.
"""

from __future__ import annotations

from capsa.runtime.spec import Identity


def passwd_text(image_passwd: str, who: Identity, home_dest: str) -> str:
    """The image's passwd with the caller's line replaced or appended."""
    entry = f"{who.name}:x:{who.uid}:{who.gid}:{who.gecos}:{home_dest}:{who.shell}"
    lines: list[str] = []
    for line in image_passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and (fields[0] == who.name or fields[2] == str(who.uid)):
            continue
        lines.append(line)
    lines.append(entry)
    return "\n".join(lines) + "\n"


def group_text(image_group: str, who: Identity, names: dict[int, str]) -> str:
    """The image's group file with the caller in each of their groups.

    *names* maps the caller's gids to the host's group names, used for
    groups the image does not have.
    """
    wanted = dict.fromkeys((who.gid, *who.groups))
    lines: list[str] = []
    for line in image_group.splitlines():
        fields = line.split(":")
        if len(fields) == 4 and fields[2].isdigit() and int(fields[2]) in wanted:
            del wanted[int(fields[2])]
            members = [m for m in fields[3].split(",") if m]
            if who.name not in members and int(fields[2]) != who.gid:
                members.append(who.name)
            line = ":".join([*fields[:3], ",".join(members)])
        lines.append(line)
    for gid in wanted:
        name = names.get(gid)
        if name is None:
            continue
        member = "" if gid == who.gid else who.name
        lines.append(f"{name}:x:{gid}:{member}")
    return "\n".join(lines) + "\n"
