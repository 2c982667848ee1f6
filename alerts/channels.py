"""Delivery channels (Slack, email) and the dispatcher that runs them off the rules' thread.

Each channel has its own worker thread and queue, so a slow or rate-limited channel delays
neither rule evaluation nor the other channel. A worker takes what is queued (waiting up to
``batch_window`` for more); ``storm_threshold`` or more alerts at once go out as one message.
A failed send is retried with exponential backoff when the failure is transient (network,
timeouts, Slack 429/5xx, SMTP 4xx) and given up at once when it is not (SMTP 5xx, Slack 4xx).
When every channel is done with an alert, ``on_done(alert, reached, errors)`` is called.
Secrets (the webhook URL, token, SMTP password) never reach a log line or an error text.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import BackoffRetryIntervalCalculator, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from traindash.alerts.config import EmailConfig, SlackConfig
from traindash.alerts.payloads import email_message, slack_batch_payload, slack_payload
from traindash.alerts.rules import Alert

log = logging.getLogger("traindash.alerts")

# slack_sdk logs request URLs, and a webhook URL is a secret: give it a logger that drops all.
_sdk_log = logging.getLogger("traindash.alerts.slack_sdk")
_sdk_log.addHandler(logging.NullHandler())
_sdk_log.propagate = False

OnDone = Callable[[Alert, list[str], dict[str, str]], None]
GAVE_UP = "gave up at shutdown"  # how an error ends when the dispatcher stopped before a channel


class DeliveryError(Exception):
    """A send failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Channel(Protocol):
    name: str

    def send(self, alerts: Sequence[Alert]) -> None: ...


def _redact(text: str, *secrets: str | None) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class SlackChannel:
    """Slack by incoming webhook (preferred) or ``chat.postMessage`` with a bot token."""

    name = "slack"

    def __init__(self, cfg: SlackConfig, dashboard_url: str, retries: int = 2) -> None:
        self.cfg = cfg
        self.dashboard_url = dashboard_url
        backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5)
        handlers = [
            RateLimitErrorRetryHandler(max_retry_count=retries),
            ServerErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
        ]
        timeout = max(1, math.ceil(cfg.timeout))
        self._webhook: WebhookClient | None = None
        self._web: WebClient | None = None
        if cfg.webhook_url:
            self._webhook = WebhookClient(
                cfg.webhook_url, timeout=timeout, logger=_sdk_log, retry_handlers=handlers
            )
        elif cfg.token and cfg.channel:
            kwargs: dict[str, Any] = {"base_url": cfg.base_url} if cfg.base_url else {}
            self._web = WebClient(
                token=cfg.token, timeout=timeout, logger=_sdk_log, retry_handlers=handlers, **kwargs
            )
        else:
            raise ValueError("slack needs a webhook_url, or a token and a channel")

    def send(self, alerts: Sequence[Alert]) -> None:
        payload = (
            slack_payload(alerts[0], self.dashboard_url)
            if len(alerts) == 1
            else slack_batch_payload(alerts, self.dashboard_url)
        )
        try:
            if self._webhook is not None:
                resp = self._webhook.send(text=payload["text"], attachments=payload["attachments"])
                status = resp.status_code
                if status // 100 != 2:
                    raise DeliveryError(
                        f"slack webhook answered HTTP {status}", retry=status == 429 or status >= 500
                    )
            else:
                assert self._web is not None and self.cfg.channel
                self._web.chat_postMessage(
                    channel=self.cfg.channel, text=payload["text"], attachments=payload["attachments"]
                )
        except DeliveryError:
            raise
        except SlackApiError as exc:
            status = exc.response.status_code
            raise DeliveryError(
                f"slack API answered HTTP {status}: {exc.response.get('error')}",
                retry=status == 429 or status >= 500,
            ) from None
        except Exception as exc:  # urllib/socket errors: the network, not the message
            text = _redact(f"{type(exc).__name__}: {exc}", self.cfg.webhook_url, self.cfg.token)
            raise DeliveryError(f"slack unreachable: {text}", retry=True) from None


class EmailChannel:
    """SMTP with a timeout always set; STARTTLS when offered (or forced); login only with a username."""

    name = "email"

    def __init__(self, cfg: EmailConfig, dashboard_url: str) -> None:
        if not cfg.to_addrs:
            raise ValueError("email needs 'to_addrs' (or a username to send to)")
        self.cfg = cfg
        self.dashboard_url = dashboard_url

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cfg.ca_file)

    def send(self, alerts: Sequence[Alert]) -> None:
        cfg = self.cfg
        msg = email_message(alerts, self.dashboard_url, cfg.from_addr, cfg.to_addrs)
        try:
            if cfg.use_ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout)
            with smtp:
                smtp.ehlo()
                if not cfg.use_ssl and (
                    cfg.starttls == "always" or (cfg.starttls == "auto" and smtp.has_extn("starttls"))
                ):
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if cfg.username:
                    smtp.login(cfg.username, cfg.password or "")
                smtp.send_message(msg, cfg.from_addr, list(cfg.to_addrs))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"smtp refused every recipient ({codes})", retry=all(400 <= c < 500 for c in codes)
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                f"smtp answered {exc.smtp_code} {_redact(text, cfg.password)[:200]}",
                retry=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"smtp server does not support {exc}", retry=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            text = _redact(f"{type(exc).__name__}: {exc}", cfg.password)
            raise DeliveryError(f"smtp unreachable: {text}", retry=True) from None


class _Pending:
    __slots__ = ("alert", "waiting", "reached", "errors", "done")

    def __init__(self, alert: Alert, names: set[str]) -> None:
        self.done = False
        self.alert = alert
        self.waiting = names
        self.reached: list[str] = []
        self.errors: dict[str, str] = {}


class Dispatcher:
    """Runs each channel on its own worker thread; see the module docstring."""

    def __init__(
        self,
        channels: Sequence[Channel],
        on_done: OnDone | None = None,
        *,
        storm_threshold: int = 5,
        batch_window: float = 0.5,
        max_attempts: int = 4,
        retry_backoff: float = 0.5,
    ) -> None:
        self.channels = list(channels)
        self.on_done = on_done
        self.storm_threshold = max(2, storm_threshold)
        self.batch_window = batch_window
        self.max_attempts = max(1, max_attempts)
        self.retry_backoff = retry_backoff
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[int, _Pending] = {}
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._queues: dict[str, queue.Queue] = {c.name: queue.Queue() for c in self.channels}
        self._threads = [
            threading.Thread(target=self._work, args=(c,), daemon=True, name=f"traindash-alerts-{c.name}")
            for c in self.channels
        ]
        for t in self._threads:
            t.start()

    def submit(self, alert: Alert) -> None:
        """Queue an alert for every channel; returns at once."""
        token = next(self._ids)
        with self._lock:
            self._pending[token] = _Pending(alert, {c.name for c in self.channels})
        if not self.channels:
            self._finish(token, None, None)
            return
        for q in self._queues.values():
            q.put((token, alert))

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted alert is delivered or given up; False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued (bounded by ``timeout``), then stop the workers."""
        done = self.flush(timeout)
        self._stop.set()
        if not done:
            self._abort.set()
            # report what is still in flight, with the channels it did reach
            with self._lock:
                left = [(token, list(p.waiting)) for token, p in self._pending.items()]
            for token, names in left:
                for name in names:
                    self._finish(token, name, GAVE_UP)
        for t in self._threads:
            t.join(max(0.1, timeout / 4))
        return done

    # -- worker side ---------------------------------------------------------------------------
    def _work(self, channel: Channel) -> None:
        q = self._queues[channel.name]
        while True:
            try:
                batch = [q.get(timeout=0.1)]
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            deadline = time.monotonic() + (0 if self._stop.is_set() else self.batch_window)
            while True:
                try:
                    batch.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups = [batch] if len(batch) >= self.storm_threshold else [[i] for i in batch]
            for group in groups:
                error = self._deliver(channel, [a for _, a in group])
                for token, _ in group:
                    self._finish(token, channel.name, error)

    def _deliver(self, channel: Channel, alerts: list[Alert]) -> str | None:
        error = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            if self._abort.is_set():
                return f"{error}; {GAVE_UP}"
            try:
                channel.send(alerts)
                if attempt > 1:
                    log.info("alerts: %s delivered on attempt %d", channel.name, attempt)
                return None
            except DeliveryError as exc:
                error, retry = f"{exc} (attempt {attempt})", exc.retry
            except Exception as exc:  # a bug in a channel must not end the worker
                error, retry = f"{type(exc).__name__} (attempt {attempt})", False
            log.warning("alerts: %s delivery of %d alert(s) failed: %s", channel.name, len(alerts), error)
            if not retry or attempt == self.max_attempts:
                break
            self._abort.wait(self.retry_backoff * 2 ** (attempt - 1))
        return error

    def _finish(self, token: int, name: str | None, error: str | None) -> None:
        with self._lock:
            p = self._pending.get(token)
            if p is None or p.done:
                return
            if name is not None:
                p.waiting.discard(name)
                if error is None:
                    p.reached.append(name)
                else:
                    p.errors[name] = error
            if p.waiting:
                return
            p.done = True
        if self.on_done is not None:
            try:
                self.on_done(p.alert, sorted(p.reached), dict(p.errors))
            except Exception:
                log.exception("alerts: recording a delivered alert failed")
        with self._idle:
            self._pending.pop(token, None)
            self._idle.notify_all()
