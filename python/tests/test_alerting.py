"""`ratethrottle.alerting` and `ratethrottle.monitoring`: alerts delivered to real receivers
on loopback (an HTTP server for Slack, webhooks and PagerDuty; aiosmtpd for email), the
cooldown shared through the storage (and by processes on one Redis), the original's payloads
and snapshot keys, and a channel that hangs."""

import email
import email.header
import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import ratethrottle as rt
from ratethrottle.alerting import AlertDispatcher
from ratethrottle.monitoring import RateThrottleMonitor

from conftest import free_port, original_module, run_processes


class Receiver:
    """An HTTP server on loopback recording every POST; `/hang` answers once `gate` is set."""

    def __init__(self):
        self.got = []
        self.gate = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/hang":
                    receiver.gate.wait(30)
                receiver.got.append((self.path, self.headers, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path):
        return [(headers, body) for p, headers, body in self.got if p == path]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.gate.set()
    receiver.server.shutdown()


def channels(receiver, **extra):
    config = {
        "enabled": True,
        "cooldown_seconds": 300,
        "slack": {"enabled": True, "channel": "#ops", "webhook_url": receiver.url + "/slack"},
        "webhook": {"enabled": True, "url": receiver.url + "/webhook", "secret": "s3cret",
                    "headers": {"X-Team": "edge"}, "timeout": 5},
        "pagerduty": {"enabled": True, "routing_key": "R0UTING", "url": receiver.url + "/pagerduty"},
    }
    config.update(extra)
    return config


def test_an_alert_reaches_slack_the_webhook_and_pagerduty(receiver):
    dispatcher = AlertDispatcher(channels(receiver))
    dispatcher.send("critical", "block_rate_exceeded", value=25.0, threshold=20.0,
                    details={"rule": "api_limit"})
    assert dispatcher.flush(10)
    assert dispatcher.get_statistics()["sent"] == 1

    (_, body), = receiver.at("/slack")
    slack = json.loads(body)
    assert slack["channel"] == "#ops" and slack["username"] == "RateThrottle"
    assert slack["text"] == "🔴 RateThrottle [CRITICAL] block_rate_exceeded"
    assert slack["attachments"][0]["color"] == "danger"

    (headers, body), = receiver.at("/webhook")
    payload = json.loads(body)
    assert payload["message"] == "block_rate_exceeded — value 25.00 exceeded critical threshold 20.00"
    assert payload["details"] == {"rule": "api_limit"}
    assert headers["X-Team"] == "edge"
    timestamp = headers["X-RateThrottle-Timestamp"]
    expected = hmac.new(b"s3cret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-RateThrottle-Signature"], "sha256=" + expected)

    (_, body), = receiver.at("/pagerduty")
    event = json.loads(body)
    assert event["routing_key"] == "R0UTING" and event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["custom_details"]["rule"] == "api_limit"


def test_the_payload_is_the_originals(receiver):
    original = original_module("alerting").AlertDispatcher({"enabled": True})
    theirs = original._build_payload("warning", "ddos_score_exceeded", "api", 0.61, 0.5,
                                     {"blocked_ips": 3})
    dispatcher = AlertDispatcher(channels(receiver, slack={}, pagerduty={}))
    dispatcher.send("warning", "ddos_score_exceeded", rule="api", value=0.61, threshold=0.5,
                    details={"blocked_ips": 3})
    assert dispatcher.flush(10)
    (_, body), = receiver.at("/webhook")
    ours = json.loads(body)
    assert sorted(ours) == sorted(theirs)
    for key in ("severity", "event", "rule", "value", "threshold", "icon", "title", "message",
                "details"):
        assert ours[key] == theirs[key], key


def test_email_is_delivered_to_a_real_smtp_server():
    controller_module = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Sink

    messages = []

    class Keep(Sink):
        async def handle_DATA(self, server, session, envelope):
            messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                             envelope.content.decode()))
            return "250 OK"

    port = free_port()
    controller = controller_module.Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        dispatcher = AlertDispatcher({
            "enabled": True,
            "email": {"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": port,
                      "use_tls": False, "from_address": "alerts@example.com",
                      "to_addresses": ["ops@example.com", "oncall@example.com"]},
        })
        dispatcher.send("warning", "violations_per_minute_exceeded", value=64.0, threshold=50.0)
        assert dispatcher.flush(10)
    finally:
        controller.stop()
    (sender, recipients, content), = messages
    assert sender == "alerts@example.com"
    assert recipients == ["ops@example.com", "oncall@example.com"]
    message = email.message_from_string(content)
    subject = str(email.header.make_header(email.header.decode_header(message["Subject"])))
    assert subject == "🟡 RateThrottle [WARNING] violations_per_minute_exceeded"
    assert "Value     : 64.0000" in message.get_payload(decode=True).decode()


def test_the_cooldown_is_shared_through_the_storage(receiver):
    storage = rt.InMemoryStorage()
    config = channels(receiver, slack={}, pagerduty={})
    first, second = AlertDispatcher(config, storage), AlertDispatcher(config, storage)
    first.send("critical", "block_rate_exceeded", value=30.0, threshold=20.0)
    second.send("critical", "block_rate_exceeded", value=31.0, threshold=20.0)
    second.send("warning", "block_rate_exceeded", value=6.0, threshold=5.0)
    assert first.flush(10) and second.flush(10)
    assert len(receiver.at("/webhook")) == 2, "one per event and severity"
    assert second.get_statistics()["suppressed"] == 1


def test_processes_on_one_redis_send_one_alert(receiver, redis_url, redis_prefix):
    code = f"""
import ratethrottle as rt
from ratethrottle.alerting import AlertDispatcher
storage = rt.RedisStorage({redis_url!r}, key_prefix={redis_prefix!r})
config = {{"enabled": True, "webhook": {{"enabled": True, "url": {receiver.url + '/webhook'!r}}}}}
dispatchers = [AlertDispatcher(config, storage) for _ in range(4)]
for d in dispatchers:
    d.send("critical", "store_circuit_opened", value=1.0, threshold=1.0)
for d in dispatchers:
    assert d.flush(10)
print(sum(d.get_statistics()["sent"] for d in dispatchers))
"""
    sent = [int(out.split()[-1]) for out in run_processes(code, 3)]
    assert sum(sent) == 1, sent
    assert len(receiver.at("/webhook")) == 1


def test_a_channel_that_hangs_holds_up_nothing(receiver):
    dispatcher = AlertDispatcher({"enabled": True, "webhook": {
        "enabled": True, "url": receiver.url + "/hang", "timeout": 20}})
    core = rt.RateThrottleCore()
    core.add_rule(rt.RateThrottleRule(name="api", limit=100, window=60))
    dispatcher.send("critical", "block_rate_exceeded", value=90.0, threshold=20.0)
    # Returned at once: the delivery waits in the background while checks go on.
    assert sum(core.check_rate_limit("client", "api").allowed for _ in range(150)) == 100
    assert receiver.at("/hang") == []
    receiver.gate.set()
    assert dispatcher.flush(20)
    assert len(receiver.at("/hang")) == 1


def test_a_misconfigured_channel_is_logged_at_each_send_as_the_original(caplog):
    dispatcher = AlertDispatcher({"enabled": True, "slack": {"enabled": True}})
    with caplog.at_level(logging.ERROR, logger="ratethrottle.alerting"):
        dispatcher.send("warning", "block_rate_exceeded", value=6.0, threshold=5.0)
    assert "Slack webhook_url not configured" in caplog.text
    assert "channels=[slack]" in repr(dispatcher)


def test_a_monitor_snapshot_has_the_originals_keys_and_alerts(receiver, tmp_path, clock):
    core = rt.RateThrottleCore(clock=clock)
    core.add_rule(rt.RateThrottleRule(name="api", limit=5, window=60, block_duration=0))
    analytics = rt.RateThrottleAnalytics()
    ddos = rt.DDoSProtection({"enabled": True}, limiter=core)
    for _ in range(10):
        status = core.check_rate_limit("203.0.113.5", "api")
        analytics.record_request("203.0.113.5", "api", allowed=status.allowed)
    dispatcher = AlertDispatcher(channels(receiver, slack={}, pagerduty={}), clock=clock)
    monitor = RateThrottleMonitor(
        {"interval": 60, "export_json": True, "export_path": str(tmp_path / "m" / "metrics.json")},
        limiter=core, ddos=ddos, analytics=analytics, dispatcher=dispatcher)
    snapshot = monitor.tick()
    assert sorted(snapshot) == ["analytics", "ddos", "limiter", "timestamp"]
    assert snapshot["limiter"]["block_rate"] == 50.0
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["limiter"]["blocked_requests"] == 5
    assert monitor.latest_snapshot() == snapshot
    assert dispatcher.flush(10)
    events = sorted(json.loads(body)["event"] for _, body in receiver.at("/webhook"))
    assert "block_rate_exceeded" in events


def test_the_monitor_keeps_the_originals_behaviour():
    with pytest.raises(ValueError, match="monitoring.interval must be positive"):
        RateThrottleMonitor({"interval": 0})

    class Broken:
        def get_metrics(self):
            raise RuntimeError("down")

    monitor = RateThrottleMonitor({"interval": 3600}, limiter=Broken())
    assert monitor.snapshot_now()["limiter"] == {"error": "down"}
    assert monitor.latest_snapshot() == {}
    monitor.start()
    assert "running=True" in repr(monitor)
    monitor.stop()
    assert "running=False" in repr(monitor)
    RateThrottleMonitor({"enabled": False, "interval": 1}).start()  # disabled: nothing runs


def test_the_configurations_sections_make_the_monitor_and_dispatcher(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("RT_WEBHOOK_SECRET", "from-env")
    path = tmp_path / "ratethrottle.yaml"
    path.write_text(f"""
rules:
  - {{name: api, limit: 2, window: 60, block_duration: 0}}
monitoring:
  interval: 30
  log_metrics: false
alerting:
  enabled: true
  cooldown_seconds: 60
  thresholds: {{block_rate_warning: 10, block_rate_critical: 40}}
  webhook:
    enabled: true
    url: {receiver.url}/webhook
    headers: {{X-Token: tok}}
""")
    manager = rt.ConfigManager(str(path))
    assert "from-env" not in json.dumps(manager.get_alerting_config()), "masked there"
    limiter = manager.create_limiter()
    for _ in range(4):
        limiter.check_rate_limit("client", "api")
    monitor = manager.create_monitor(limiter)
    assert monitor.interval == 30 and monitor.dispatcher is not None
    monitor.tick()
    assert monitor.dispatcher.flush(10)
    # Half the checks refused (block_rate_exceeded, critical), and violations_per_minute.
    alerts = {json.loads(body)["event"]: (headers, body) for headers, body in receiver.at("/webhook")}
    assert sorted(alerts) == ["block_rate_exceeded", "violations_per_minute_exceeded"]
    headers, body = alerts["block_rate_exceeded"]
    assert json.loads(body)["severity"] == "critical"
    assert headers["X-Token"] == "tok"
    expected = hmac.new(b"from-env", headers["X-RateThrottle-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-RateThrottle-Signature"] == "sha256=" + expected
