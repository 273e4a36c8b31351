"""cwltool ``--singularity``: its feature probe (a Singularity 2.x image it
ships), the Apptainer 1.1+ command line (``run --no-eval``), a tool and a
two-step workflow in an image pulled from the registry."""

from __future__ import annotations

import json

from tests.clients.conftest import Client

_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: {ref}
baseCommand: [sh, -c]
arguments: ["echo $0 from `id -un` > said.txt", $(inputs.word)]
inputs:
  word: string
outputs:
  said:
    type: File
    outputBinding: {{glob: said.txt}}
"""

_SHOUT = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: {ref}
baseCommand: [sh, -c, "tr a-z A-Z < $0 > shout.txt"]
arguments: [$(inputs.text.path)]
inputs:
  text: File
outputs:
  shout:
    type: File
    outputBinding: {{glob: shout.txt}}
"""

_WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
inputs:
  word: string
outputs:
  shout: {type: File, outputSource: loud/shout}
steps:
  say: {run: say.cwl, in: {word: word}, out: [said]}
  loud: {run: shout.cwl, in: {text: say/said}, out: [shout]}
"""


def test_cwltool_workflow(client: Client, busybox_ref: str) -> None:
    work = client.workdir
    (work / "say.cwl").write_text(_TOOL.format(ref=busybox_ref))
    (work / "shout.cwl").write_text(_SHOUT.format(ref=busybox_ref))
    (work / "wf.cwl").write_text(_WORKFLOW)
    (work / "job.json").write_text(json.dumps({"word": "hello"}))
    (work / "images").mkdir()  # cwltool's image cache: it expects the directory
    client.user.own(work / "images")
    env = {"CWL_SINGULARITY_CACHE": str(work / "images")}
    tool = client.run("cwltool", "--singularity", "--outdir", str(work / "tool-out"),
                      "say.cwl", "job.json", env=env)
    assert tool.returncode == 0, f"{tool.stdout}\n{tool.stderr}"
    said = json.loads(tool.stdout)["said"]
    assert (work / "tool-out" / "said.txt").read_text() == "hello from " \
        f"{client.user.name}\n", said
    # Apptainer >= 1.1: `run --no-eval` (item of `apptainer --version`)
    assert " run " in tool.stderr and "--no-eval" in tool.stderr, tool.stderr
    # the probe ran the Singularity 2.x image cwltool ships: --userns was chosen
    assert "--userns" in tool.stderr, tool.stderr
    flow = client.run("cwltool", "--singularity", "--outdir", str(work / "wf-out"),
                      "wf.cwl", "job.json", env=env)
    assert flow.returncode == 0, f"{flow.stdout}\n{flow.stderr}"
    assert (work / "wf-out" / "shout.txt").read_text() == \
        f"HELLO FROM {client.user.name.upper()}\n"
