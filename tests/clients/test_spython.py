"""spython (singularity-cli), the Python API over the ``singularity`` command:
pull, execute, run, inspect, help, version and instances."""

from __future__ import annotations

import json

from tests.clients.conftest import Client

_SCRIPT = r"""
import json, sys
from spython.main import Client
ref, folder = sys.argv[1], sys.argv[2]
out = {}
out["version"] = Client.version()
image = Client.pull("docker://" + ref, pull_folder=folder)
out["image"] = image
out["exec"] = Client.execute(image, ["sh", "-c", "echo $((6 * 7))"])
out["exec_bind"] = Client.execute(image, ["cat", "/data/f"], bind=[folder + ":/data"])
out["exec_limits"] = Client.execute(image, ["echo", "ok"], options=["--cpus", "1"])
out["run"] = Client.run(image, args=["echo", "[1, 2]"])
out["inspect_labels"] = Client.inspect(image)["attributes"]["labels"]
out["help"] = Client.help("exec")
instance = Client.instance(image, name="spy", options=["--hostname", "spyhost"])
out["instance_name"] = instance.name
out["instance_pid"] = instance.pid
out["instance_exec"] = Client.execute(instance, ["hostname"])
out["listed"] = [i.name for i in Client.instances(quiet=True)]
out["stop"] = instance.stop()
out["listed_after"] = Client.instances(quiet=True)
print("RESULT" + json.dumps(out, default=str))
"""


def test_spython_workflow(client: Client, busybox_ref: str) -> None:
    (client.workdir / "f").write_text("bound\n")
    done = client.python(_SCRIPT, busybox_ref, str(client.workdir))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    assert result["version"].startswith("apptainer version 1.")
    assert result["image"] == str(client.workdir / "busybox:1.0.sif")
    # strings, not [stdout, stderr] lists: nothing on stderr
    assert result["exec"] == "42\n"
    assert result["exec_bind"] == "bound\n"
    assert result["exec_limits"] == "ok\n"
    assert result["run"] == [1, 2]  # spython decodes JSON output
    assert result["inspect_labels"]["org.capsa.test"] == "busybox"
    assert result["help"].startswith("Run a command within a container\n")
    assert result["instance_name"] == "spy"
    assert isinstance(result["instance_pid"], int) and result["instance_pid"] > 0
    assert result["instance_exec"] == "spyhost\n"
    assert result["listed"] == ["spy"]
    assert result["stop"] == 0
    assert result["listed_after"] in ([], None)
