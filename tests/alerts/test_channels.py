"""Channels against real loopback servers: a Slack-like HTTP server and aiosmtpd."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.alerts.servers import MailServer, SlackStub
from tests.harness import free_port, wait_for
from traindash.alerts.channels import DeliveryError, Dispatcher, EmailChannel, SlackChannel
from traindash.alerts.config import AlertsConfig, EmailConfig, SlackConfig
from traindash.alerts.rules import Alert

URL = "http://127.0.0.1:8050"


def alert(i: int = 0, level: str = "warning") -> Alert:
    return Alert(
        level,
        "profit_low",
        "Low profit",
        f"Profit -{i} is low",
        f"run-{i}",
        {"profit": -float(i)},
        time.time(),
    )


class Done:
    """Collects on_done calls of a Dispatcher."""

    def __init__(self) -> None:
        self.calls: list[tuple[Alert, list[str], dict[str, str]]] = []

    def __call__(self, a: Alert, reached: list[str], errors: dict[str, str]) -> None:
        self.calls.append((a, reached, errors))


def email_channel(server: MailServer, **extra) -> EmailChannel:
    cfg = AlertsConfig.from_mapping({"email": server.email_config(**extra)}, env={}).email
    return EmailChannel(cfg, URL)


def test_slack_webhook_delivers_blocks_with_colour(slack: SlackStub):
    SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL).send([alert(1, "critical")])
    (req,) = slack.requests
    assert req.path == "/services/T000/B000/secretpart"
    assert req.body["text"] == "[CRITICAL] Low profit: Profit -1 is low"
    assert req.body["attachments"][0]["color"] == "#e01e5a"
    assert "?run=run-1" in str(req.body["attachments"][0]["blocks"])


def test_slack_429_honours_retry_after(slack: SlackStub):
    slack.script = [(429, {"Retry-After": "1"})]
    SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL).send([alert()])
    first, second = slack.requests
    assert second.t - first.t >= 1.0


def test_slack_500_is_retried(slack: SlackStub):
    slack.script = [(500, {})]
    SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL).send([alert()])
    assert len(slack.requests) == 2


def test_slack_4xx_is_not_retried(slack: SlackStub):
    slack.script = [(404, {})]
    with pytest.raises(DeliveryError) as err:
        SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL).send([alert()])
    assert not err.value.retry and len(slack.requests) == 1
    assert "secretpart" not in str(err.value)


def test_slack_bot_token_posts_to_a_channel(slack: SlackStub):
    cfg = SlackConfig(enabled=True, token="xoxb-test", channel="#alerts", base_url=slack.api_url)
    SlackChannel(cfg, URL).send([alert()])
    (req,) = slack.requests
    assert req.path == "/api/chat.postMessage"
    assert req.body["channel"] == "#alerts" and req.headers["Authorization"] == "Bearer xoxb-test"


def test_slack_unreachable_fails_fast_and_hides_the_url():
    port = free_port()  # nothing listens here
    ch = SlackChannel(
        SlackConfig(enabled=True, webhook_url=f"http://127.0.0.1:{port}/hooks/SECRET", timeout=2), URL
    )
    start = time.monotonic()
    with pytest.raises(DeliveryError) as err:
        ch.send([alert()])
    assert time.monotonic() - start < 5 and err.value.retry and "SECRET" not in str(err.value)


def test_email_plain_delivery_without_login(smtp: MailServer):
    email_channel(smtp).send([alert(3, "critical")])
    (mail,) = smtp.mails
    assert mail.message["Subject"] == "[traindash CRITICAL] Low profit"
    assert mail.rcpt_tos == ["oncall@example.com"] and mail.login is None and not mail.tls
    assert "Profit -3 is low" in mail.message.get_payload()


def test_email_4xx_is_retried_and_5xx_is_not(smtp: MailServer):
    done = Done()
    d = Dispatcher([email_channel(smtp)], done, batch_window=0, retry_backoff=0.05, max_attempts=3)
    try:
        smtp.handler.rcpt_script = ["451 4.3.0 try again later"]
        d.submit(alert(1))
        assert d.flush(20)
        assert done.calls[-1][1:] == (["email"], {}) and len(smtp.mails) == 1
        assert smtp.handler.attempts == 2
        smtp.handler.rcpt_script = ["550 5.1.1 no such user"] * 5
        d.submit(alert(2))
        assert d.flush(20)
        _, reached, errors = done.calls[-1]
        assert reached == [] and "550" in errors["email"] and "(attempt 1)" in errors["email"]
        assert smtp.handler.attempts == 3  # one more RCPT: not retried
    finally:
        d.close(5)


def test_email_login_only_with_a_username(tmp_path: Path):
    server = MailServer(tmp_path, auth=True)
    try:
        email_channel(server).send([alert()])
        assert server.handler.logins == []
        env = {"TRAINDASH_SMTP_PASSWORD": "s3cret"}
        cfg = AlertsConfig.from_mapping(
            {"email": server.email_config(username="bot@example.com")}, env=env
        ).email
        assert "s3cret" not in repr(cfg)
        EmailChannel(cfg, URL).send([alert()])
        assert server.handler.logins == [("bot@example.com", "s3cret")]
        assert server.mails[-1].login == "bot@example.com"
    finally:
        server.close()


def test_email_starttls_when_offered(tmp_path: Path):
    server = MailServer(tmp_path, tls=True)
    try:
        email_channel(server, ca_file=str(server.cert)).send([alert()])
        assert server.mails[-1].tls
        with pytest.raises(DeliveryError) as err:  # STARTTLS offered, certificate not trusted
            email_channel(server).send([alert()])
        assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    finally:
        server.close()


def test_email_starttls_forced_but_not_offered(smtp: MailServer):
    with pytest.raises(DeliveryError) as err:
        email_channel(smtp, starttls=True).send([alert()])
    assert not err.value.retry and smtp.mails == []


def test_failures_are_retried_with_backoff_and_recorded(slack: SlackStub, smtp: MailServer):
    slack.script = [(500, {})] * 100
    done = Done()
    slack_ch = SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL, retries=1)
    d = Dispatcher([slack_ch, email_channel(smtp)], done, batch_window=0, max_attempts=3, retry_backoff=0.05)
    try:
        d.submit(alert(1))
        assert d.flush(60)
    finally:
        d.close(5)
    ((_, reached, errors),) = done.calls
    assert reached == ["email"]
    assert errors["slack"] == "slack webhook answered HTTP 500 (attempt 3)"
    assert len(slack.requests) == 3 * 2  # 3 attempts, each with one slack_sdk retry


def test_a_slow_channel_delays_neither_the_caller_nor_the_other_channel(slack: SlackStub, smtp: MailServer):
    slack.delay = 3.0
    done = Done()
    d = Dispatcher(
        [SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL), email_channel(smtp)],
        done,
        batch_window=0,
    )
    try:
        start = time.monotonic()
        d.submit(alert(1))
        assert time.monotonic() - start < 0.05
        wait_for(lambda: smtp.mails, 10, "the email")
        assert smtp.mails[0].t - start < 2.0 and not done.calls  # slack still busy
        assert d.flush(20)
        assert done.calls[0][1] == ["email", "slack"]
    finally:
        d.close(5)


def test_a_storm_across_many_runs_is_one_message_per_channel(slack: SlackStub, smtp: MailServer):
    done = Done()
    d = Dispatcher(
        [SlackChannel(SlackConfig(enabled=True, webhook_url=slack.url), URL), email_channel(smtp)],
        done,
        storm_threshold=5,
        batch_window=1.0,
    )
    try:
        for i in range(30):
            d.submit(alert(i))
        assert d.flush(30)
    finally:
        d.close(5)
    assert slack.texts() == ["[WARNING] 30 alerts across 30 runs"]
    assert [m.message["Subject"] for m in smtp.mails] == ["[traindash WARNING] 30 alerts across 30 runs"]
    assert len(done.calls) == 30 and all(c[1] == ["email", "slack"] for c in done.calls)


def test_dispatcher_without_channels_finishes_at_once():
    done = Done()
    d = Dispatcher([], done)
    d.submit(alert())
    assert d.flush(1) and done.calls[0][1:] == ([], {})
    d.close(1)


def test_email_config_needs_recipients():
    with pytest.raises(ValueError):
        EmailChannel(EmailConfig(enabled=True), URL)
