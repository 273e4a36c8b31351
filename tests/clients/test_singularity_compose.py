"""singularity-compose: up (pull, then ``instance start`` with its network and
hostname flags), ps, exec, restart and down, through spython."""

from __future__ import annotations

from tests.clients.conftest import Client

_COMPOSE = """\
version: "2.0"
instances:
  app1:
    image: docker://{ref}
  app2:
    image: docker://{ref}
"""


def test_compose_up_ps_exec_restart_down(client: Client, busybox_ref: str) -> None:
    (client.workdir / "singularity-compose.yml").write_text(_COMPOSE.format(ref=busybox_ref))

    def compose(*args: str) -> str:
        done = client.run("singularity-compose", *args)
        assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    up = client.run("singularity-compose", "up")  # replicas app11, app21 (numbered)
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
    assert (client.workdir / "app1" / "app1.sif").is_file(), f"{up.stdout}\n{up.stderr}"
    table = compose("ps")
    assert "app11" in table and "app21" in table, table
    assert compose("exec", "app11", "hostname").strip().endswith("app11")
    hosts = compose("exec", "app21", "cat", "/etc/hosts")
    assert "app11" in hosts and "app21" in hosts, hosts
    compose("restart")
    assert "app11" in compose("ps")
    compose("down")
    listed = client.run("singularity", "instance", "list", "--json")
    assert listed.stdout.replace(" ", "").replace("\t", "").replace("\n", "") == \
        '{"instances":[]}', listed
