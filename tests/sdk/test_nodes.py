"""Three `posture serve` nodes on one PostgreSQL, sharing one data directory: the official SDK's
repair → verified → rollback → verified flow with each call sent to another node.

Needs POSTURE_TEST_DATABASE_URL (a PostgreSQL server; scripts/test.sh starts one); skipped
without it, unless POSTURE_REQUIRE_POSTGRES says it must run."""
import os
import secrets
import subprocess
import threading

import pytest

from clients import SasSdk
from conftest import Server
from test_conformance import REDIS_CHECK, wait_for_task

SERVER = os.environ.get("POSTURE_TEST_DATABASE_URL")


@pytest.fixture
def database():
    if not SERVER:
        if os.environ.get("POSTURE_REQUIRE_POSTGRES"):
            pytest.fail("POSTURE_REQUIRE_POSTGRES is set but POSTURE_TEST_DATABASE_URL is not")
        pytest.skip("POSTURE_TEST_DATABASE_URL is not set")
    name = f"posture_sdk_{secrets.token_hex(6)}"
    base = SERVER.rsplit("/", 1)[0]
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    yield f"{base}/{name}"
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


def test_the_sdk_flow_with_each_call_sent_to_another_node(tmp_path, database):
    data = tmp_path / "data"
    nodes = [None] * 3

    def start(i):
        nodes[i] = Server(data, args=("--database", database), log_name=f"node-{i}.log")

    # Started together: one admin, one credentials.json, one demo fleet between them.
    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert all(nodes), "every node started"
        creds = nodes[0].credentials
        a, b, c = (SasSdk(n.endpoint, creds["AccessKeyId"], creds["AccessKeySecret"]) for n in nodes)

        failing = a.call("ListCheckInstanceResult", {"CheckId": REDIS_CHECK, "Statuses": ["NOT_PASS"], "Lang": "en"})
        row = next(r for r in failing["BasicData"] if r["InstanceName"] == "web-01")
        target = {"InstanceId": row["InstanceId"], "RegionId": row["RegionId"]}
        conf = nodes[0].fleet_file(row["InstanceId"], "etc/redis/redis.conf")
        original = conf.read_bytes()

        answer = b.call("SubmitOperationTask", {
            "CheckId": REDIS_CHECK, "Type": "REPAIR", "DimensionType": "INSTANCE", "OperationTaskInstances": [target],
            "RepairTempParam": [{"Name": "IPPort", "Value": "127.0.0.1:6379"}],
        })
        repair = wait_for_task(c, REDIS_CHECK, answer["RootTaskId"])
        assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
        assert "\nbind 127.0.0.1\n" in conf.read_text()

        answer = c.call("SubmitOperationTask", {
            "CheckId": REDIS_CHECK, "Type": "ROLLBACK", "OperationTaskInstances": [{**target, "TaskId": repair["TaskId"]}],
        })
        rollback = wait_for_task(a, REDIS_CHECK, answer["RootTaskId"])
        assert rollback["Status"] == "ROLL_BACK_VERIFIED", rollback
        assert conf.read_bytes() == original, "the rollback is byte-identical"
    finally:
        for n in nodes:
            if n:
                n.stop()
