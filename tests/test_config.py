from __future__ import annotations

import json

import pytest

from traindash.config import CollectorConfig, ConfigError, Endpoints, ProducerConfig, UIConfig, load_file


def test_flags_beat_env_beat_file_beat_defaults(tmp_path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "training_dashboard": {
                    "port": 9000,
                    "theme": "dark",
                    "collector": {"db": "file.duckdb", "ingest": "tcp://f:1"},
                }
            }
        )
    )
    block = load_file(cfg)
    env = {"TRAINDASH_DB": "env.duckdb", "TRAINDASH_ROWS": "tcp://e:2"}
    c = CollectorConfig.resolve({"query": "tcp://flag:3"}, env, block)
    assert str(c.db) == "env.duckdb"
    assert c.endpoints == Endpoints("tcp://f:1", "tcp://e:2", "tcp://flag:3")
    assert CollectorConfig.resolve({}, {}, {}).endpoints == Endpoints()
    ui = UIConfig.resolve({}, {}, block)
    assert (ui.port, ui.theme) == (9000, "dark")


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"theme": "neon"}, "theme 'neon'"),
        ({"port": 70000}, "out of range"),
        ({"port": "abc"}, "not a valid int"),
    ],
)
def test_bad_values_name_themselves(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UIConfig.resolve(flags, {}, {})


def test_bad_config_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.json")


def test_env_interval_overrides() -> None:
    p = ProducerConfig.resolve({}, {"TRAINDASH_RESEND_AFTER": "0.25"}, {})
    assert p.resend_after == 0.25
