"""Agents as separate processes on loopback, each with its own root, driven through the
official Sas SDK (v3 and v1): a check, then a repair verified and a rollback verified through
an agent, the root byte-identical after it; the other agent's root untouched; a preview
answered by the agent, equal to the change its repair then makes."""
import json
import os
import subprocess
import time
from pathlib import Path

from conftest import posture_bin
from test_conformance import make_client, wait_for_task
from test_preview import patched

SSHD = "# sshd\nPort 22\nPermitRootLogin yes\nPermitEmptyPasswords no\n"


def agent_bin() -> str:
    return str(Path(posture_bin()).with_name("posture-agent"))


class Agent:
    def __init__(self, base: Path, server, token: str, instance_id: str):
        self.root = base / "root"
        (self.root / "etc/ssh").mkdir(parents=True)
        self.sshd = self.root / "etc/ssh/sshd_config"
        self.sshd.write_text(SSHD)
        self.state = base / "state"
        out = subprocess.run(
            [agent_bin(), "enroll", "--server", f"http://{server.endpoint}", "--token", token,
             "--state", str(self.state), "--root", str(self.root), "--instance-id", instance_id],
            check=True, capture_output=True, text=True)
        self.agent_id = json.loads(out.stdout)["AgentId"]
        self.log = open(base / "agent.log", "w")
        self.proc = subprocess.Popen([agent_bin(), "run", "--state", str(self.state)], stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def result(client, instance_id, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = client.call("ListCheckInstanceResult", {"CheckId": 1001, "InstanceIds": [instance_id]})["BasicData"]
        if rows:
            return rows[0]["Status"]
        time.sleep(0.1)
    raise AssertionError(f"no result on {instance_id}")


def test_repair_and_rollback_through_agents_with_the_official_sdk(server, tmp_path):
    token = json.loads(subprocess.run(
        [posture_bin(), "agents", "token", "create", "--data", str(server.data),
         "--account", server.credentials["AccountId"], "--uses", "2"],
        check=True, capture_output=True, text=True).stdout)["Token"]
    agents = [Agent(tmp_path / name, server, token, name) for name in ("agent-one", "agent-two")]
    try:
        for kind in ("sas-sdk-v3", "sas-sdk-v1"):
            client = make_client(server, kind)
            client.call("SubmitCheck")
            for a in agents:
                assert result(client, a.root.parent.name) == "NOT_PASS"
            one = agents[0]
            # The agent plans the repair on its own root and answers the preview: the diff,
            # applied to the file, is the file the repair then writes.
            (planned,) = make_client(server, "aliyun-python-sdk-core").call("PreviewOperationTask", {
                "CheckId": 1001, "Type": "REPAIR", "OperationTaskInstances": [{"InstanceId": "agent-one"}]})["Instances"]
            assert planned["Outcome"] == "CHANGE", planned
            (change,) = planned["Changes"]
            assert change["File"] == "/etc/ssh/sshd_config" and one.sshd.read_text() == SSHD
            repair = client.call("SubmitOperationTask", {
                "CheckId": 1001, "Type": "REPAIR", "OperationTaskInstances": [{"InstanceId": "agent-one"}]})
            task = wait_for_task(client, 1001, repair["RootTaskId"])
            assert task["Status"] == "REPAIR_SUCCESS_VERIFIED", task
            assert "PermitRootLogin no" in one.sshd.read_text()
            assert one.sshd.read_text() == patched(SSHD, change["Diff"])
            assert agents[1].sshd.read_text() == SSHD
            rollback = client.call("SubmitOperationTask", {
                "CheckId": 1001, "Type": "ROLLBACK",
                "OperationTaskInstances": [{"InstanceId": "agent-one", "TaskId": task["TaskId"]}]})
            assert wait_for_task(client, 1001, rollback["RootTaskId"])["Status"] == "ROLL_BACK_VERIFIED"
            assert one.sshd.read_bytes() == SSHD.encode(), "byte for byte"
            assert result(client, "agent-one") == "NOT_PASS"
    finally:
        for a in agents:
            a.stop()
