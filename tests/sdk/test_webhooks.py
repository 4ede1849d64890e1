"""Webhooks over real HTTP (CreateWebhook, ListWebhooks, DeleteWebhook through the core SDK's
CommonRequest) with a receiver started by the test: a repair and its rollback are reported
(task.finished, root.finished, and check.failed when the rollback turns the item NOT_PASS
again); deliveries made while the receiver was down are retried until it answers; each carries
its id for de-duplication and an HMAC-SHA256 signature the receiver verifies with the secret."""
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import free_port
from test_conformance import expect_error, make_client, wait_for_task

WEB01 = "i-bp1a2c3d4e5f6g7h8i9j"


class Receiver:
    """An HTTP server on `port` recording every POST (headers, body)."""

    def __init__(self, port):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def verified(secret, headers, body):
    t, v1 = (part.split("=", 1)[1] for part in headers["x-posture-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


def test_events_are_delivered_signed_and_retried_until_the_receiver_answers(server):
    client = make_client(server, "aliyun-python-sdk-core")
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/posture"
    expect_error(lambda: client.call("CreateWebhook", {"Url": "ftp://127.0.0.1/x"}), "InvalidParameter", 400)
    expect_error(lambda: client.call("CreateWebhook", {"Url": url, "Events": ["task.started"]}), "InvalidParameter", 400)
    hook = client.call("CreateWebhook", {"Url": url, "Events": ["task.finished", "root.finished", "check.failed"]})
    secret = hook["Secret"]
    assert len(secret) >= 32 and hook["Events"] == ["check.failed", "root.finished", "task.finished"]

    # The receiver is down: a repair and its rollback happen meanwhile.
    repair = client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR",
                                                 "OperationTaskInstances": [{"InstanceId": WEB01}]})
    task = wait_for_task(client, 1001, repair["RootTaskId"])
    assert task["Status"] == "REPAIR_SUCCESS_VERIFIED", task
    rollback = client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "ROLLBACK",
                                                   "OperationTaskInstances": [{"InstanceId": WEB01, "TaskId": task["TaskId"]}]})
    assert wait_for_task(client, 1001, rollback["RootTaskId"])["Status"] == "ROLL_BACK_VERIFIED"
    deadline = time.time() + 20
    while True:
        (listed,) = client.call("ListWebhooks", {})["Webhooks"]
        failed = [d for d in listed["Deliveries"] if d["Attempts"] >= 1 and not d["Delivered"]]
        if len(failed) >= 5 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(failed) >= 5, listed
    assert "Secret" not in json.dumps(listed) and secret not in json.dumps(listed)
    first_ids = {d["DeliveryId"] for d in failed}

    receiver = Receiver(port)
    try:
        deadline = time.time() + 30
        while len(receiver.received) < 5 and time.time() < deadline:
            time.sleep(0.2)
        events = sorted(json.loads(body)["Event"] for _, body in receiver.received)
        assert events == ["check.failed", "root.finished", "root.finished", "task.finished", "task.finished"], events
        for headers, body in receiver.received:
            doc = json.loads(body)
            assert verified(secret, headers, body), headers
            assert not verified("another secret", headers, body)
            assert headers["x-posture-delivery"] == doc["DeliveryId"] and headers["x-posture-event"] == doc["Event"]
        by_event = {json.loads(b)["Event"]: json.loads(b) for _, b in receiver.received}
        assert by_event["check.failed"]["CheckId"] == 1001 and by_event["check.failed"]["InstanceId"] == WEB01
        statuses = {json.loads(b)["Status"] for _, b in receiver.received if json.loads(b)["Event"] == "task.finished"}
        assert statuses == {"REPAIR_SUCCESS_VERIFIED", "ROLL_BACK_VERIFIED"}
        assert {json.loads(b)["DeliveryId"] for _, b in receiver.received} == first_ids, "the same ids, retried"
        (listed,) = client.call("ListWebhooks", {})["Webhooks"]
        assert all(d["Delivered"] and d["Attempts"] >= 2 and d["LastResult"] == "HTTP 200" for d in listed["Deliveries"]), listed
    finally:
        receiver.stop()

    assert client.call("DeleteWebhook", {"WebhookId": hook["WebhookId"]})["Deleted"]
    expect_error(lambda: client.call("DeleteWebhook", {"WebhookId": hook["WebhookId"]}), "WebhookNotFound", 404)
    assert client.call("ListWebhooks", {})["Webhooks"] == []


def test_a_receiver_that_never_answers_holds_only_its_own_deliveries(server):
    import socket
    client = make_client(server, "aliyun-python-sdk-core")
    # A receiver that accepts, then sends one byte every half second and never a line.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []

    def drip():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=lambda c=conn: [c.send(b"H") or time.sleep(0.5) for _ in range(100)], daemon=True).start()

    threading.Thread(target=drip, daemon=True).start()
    good_port = free_port()
    receiver = Receiver(good_port)
    try:
        client.call("CreateWebhook", {"Url": f"http://127.0.0.1:{listener.getsockname()[1]}/slow", "Events": ["task.finished"]})
        client.call("CreateWebhook", {"Url": f"http://127.0.0.1:{good_port}/ok", "Events": ["task.finished"]})
        started = time.time()
        root = client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR",
                                                   "OperationTaskInstances": [{"InstanceId": WEB01}]})["RootTaskId"]
        wait_for_task(client, 1001, root)
        while not receiver.received and time.time() - started < 8:
            time.sleep(0.1)
        assert receiver.received, "the healthy receiver waited for the one that never answers"
        # Tried beside the healthy one, not necessarily before it: its accept may come later.
        while not held and time.time() - started < 8:
            time.sleep(0.1)
        assert held, "the slow receiver was tried too"
    finally:
        receiver.stop()
        listener.close()
        for c in held:
            c.close()
