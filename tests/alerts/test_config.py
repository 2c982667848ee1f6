"""AlertsConfig: the guide's dict and file block, secrets from the environment, bad values."""

from __future__ import annotations

import pytest

from traindash.alerts.config import AlertsConfig
from traindash.config import ConfigError


def test_secrets_come_from_the_environment_first_and_never_show():
    env = {
        "TRAINDASH_SLACK_WEBHOOK_URL": "https://hooks.example/T/B/envsecret",
        "MY_SMTP_PW": "pw-from-env",
        "TRAINDASH_SLACK_TOKEN": "xoxb-envtoken",
    }
    cfg = AlertsConfig.from_mapping(
        {
            "email": {
                "enabled": True,
                "username": "u@example.com",
                "password": "literal",
                "password_env": "MY_SMTP_PW",
            },
            "slack": {"enabled": True, "webhook_url": "https://hooks.example/literal"},
        },
        env,
    )
    assert cfg.email.password == "pw-from-env"
    assert cfg.slack.webhook_url == "https://hooks.example/T/B/envsecret"
    assert cfg.slack.token == "xoxb-envtoken"
    assert cfg.email.to_addrs == ("u@example.com",) and cfg.email.from_addr == "u@example.com"
    shown = repr(cfg)
    assert "envsecret" not in shown and "pw-from-env" not in shown and "xoxb" not in shown
    literal = AlertsConfig.from_mapping({"email": {"password": "literal"}}, {})
    assert literal.email.password == "literal"


def test_file_block_and_flags():
    block = {
        "port": 9000,
        "alerts": {
            "enabled": False,
            "thresholds": "aggressive",
            "email": {"smtp_port": 465, "starttls": False},
        },
    }
    cfg = AlertsConfig.resolve({}, {}, block)
    assert not cfg.enabled and cfg.thresholds.no_improvement_episodes == 200
    assert cfg.dashboard_url == "http://127.0.0.1:9000"
    assert cfg.email.use_ssl and cfg.email.starttls == "never"
    cfg = AlertsConfig.resolve({"dashboard_url": "https://dash.example"}, {}, block)
    assert cfg.dashboard_url == "https://dash.example"


@pytest.mark.parametrize(
    "block,needle",
    [
        ({"thresholds": "reckless"}, "preset"),
        ({"thresholds": {"critical_loss_threshold": "high"}}, "non-numeric"),
        ({"rules": [{"title": "no condition"}]}, "condition"),
        ({"rules": [{"condition": "loss > 1", "level": "panic"}]}, "level"),
        ({"cooldown_seconds": "soon"}, "cooldown_seconds"),
        ({"email": {"starttls": "maybe"}}, "starttls"),
    ],
)
def test_bad_values_are_named(block, needle):
    with pytest.raises(ConfigError, match=needle):
        AlertsConfig.from_mapping(block, {})
