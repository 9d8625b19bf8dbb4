"""Settings: CHUTES_* variables, flags over variables, front-door selection, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chutes.cli import build_parser, settings_from_args
from chutes.settings import Settings, SettingsError, load_settings

SESSION_ENV = {"CF_API_TOKEN": "x", "CF_ZONE_ID": "z", "CF_TUNNEL_ID": "t", "DOMAIN": "example.com"}


def test_defaults_watch_everything_and_serve_the_crd_front_doors() -> None:
    settings = load_settings({})
    assert settings.namespaces == ()
    assert settings.owner_id == "default"
    assert settings.resync_interval == 300
    assert settings.front_doors({}) == ("chutes", "httproutes", "tunnels")


def test_environment_variables_are_read_with_the_prefix() -> None:
    settings = load_settings(
        {"CHUTES_OWNER_ID": "cluster-a", "CHUTES_RESYNC_INTERVAL": "30", "CHUTES_NAMESPACES": "a, b",
         "CHUTES_HTTPROUTES": "false", "CHUTES_TUNNELS": "false", "CHUTES_LOG_LEVEL": "debug"}
    )
    assert settings.owner_id == "cluster-a"
    assert settings.resync_interval == 30
    assert settings.namespaces == ("a", "b")
    assert settings.front_doors({}) == ("chutes",)
    assert settings.log_level == "DEBUG"


def test_the_sdk_base_url_variable_is_honoured_and_the_explicit_one_wins() -> None:
    assert load_settings({"CLOUDFLARE_BASE_URL": "http://a/client/v4"}).cloudflare_base_url == "http://a/client/v4"
    both = {"CLOUDFLARE_BASE_URL": "http://a/client/v4", "CHUTES_CLOUDFLARE_BASE_URL": "http://b/client/v4"}
    assert load_settings(both).cloudflare_base_url == "http://b/client/v4"


def test_flags_override_variables() -> None:
    args = build_parser().parse_args(
        ["run", "-n", "team-a", "-n", "team-b", "--owner-id", "flag", "--no-chutes", "--sessions", "--no-tunnels"]
    )
    settings = settings_from_args(args, {"CHUTES_OWNER_ID": "env", "CHUTES_NAMESPACES": "other"})
    assert settings.owner_id == "flag"
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.front_doors({}) == ("httproutes", "sessions")


def test_all_namespaces_flag_overrides_a_namespace_variable() -> None:
    args = build_parser().parse_args(["run", "-A"])
    assert settings_from_args(args, {"CHUTES_NAMESPACES": "a"}).namespaces == ()


def test_session_front_door_turns_on_when_its_environment_is_set() -> None:
    settings = load_settings({})
    assert "sessions" in settings.front_doors(SESSION_ENV)
    assert "sessions" not in settings.front_doors({**SESSION_ENV, "CF_TUNNEL_ID": ""})
    assert "sessions" not in load_settings({"CHUTES_SESSIONS": "0"}).front_doors(SESSION_ENV)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"CHUTES_OWNER_ID": "Bad_Owner"}, "CHUTES_OWNER_ID"),
        ({"CHUTES_RESYNC_INTERVAL": "soon"}, "CHUTES_RESYNC_INTERVAL"),
        ({"CHUTES_RESYNC_INTERVAL": "-5"}, "CHUTES_RESYNC_INTERVAL"),
        ({"CHUTES_STANDALONE": "maybe"}, "CHUTES_STANDALONE"),
        ({"CHUTES_LOG_FORMAT": "xml"}, "CHUTES_LOG_FORMAT"),
        ({"CHUTES_ALLOW_ADOPTION": "sometimes"}, "CHUTES_ALLOW_ADOPTION"),
        ({"CHUTES_LEDGER_NAMESPACE": "Chute_System"}, "CHUTES_LEDGER_NAMESPACE"),
        ({"CHUTES_CLOUDFLARED_IMAGES": " , "}, "CHUTES_CLOUDFLARED_IMAGES"),
    ],
)
def test_a_malformed_setting_is_refused_with_its_name(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ)


def test_cloudflared_images_default_to_the_official_repository_and_are_read_as_a_list() -> None:
    assert load_settings({}).cloudflared_images == ("cloudflare/cloudflared",)
    settings = load_settings({"CHUTES_CLOUDFLARED_IMAGES": "cloudflare/cloudflared, registry.example.com/mirror/"})
    assert settings.cloudflared_images == ("cloudflare/cloudflared", "registry.example.com/mirror/")
    args = build_parser().parse_args(["run", "--cloudflared-image", "ghcr.io/me/cloudflared"])
    assert settings_from_args(args, {}).cloudflared_images == ("ghcr.io/me/cloudflared",)


def test_adoption_is_off_and_the_ledger_follows_the_operator_by_default() -> None:
    settings = load_settings({})
    assert settings.allow_adoption is False
    assert settings.ledger_namespace is None
    assert load_settings({"CHUTES_LEDGER_NAMESPACE": ""}).ledger_namespace is None  # the chart's unset value


def test_adoption_and_the_ledger_namespace_from_variables_and_flags() -> None:
    environ = {"CHUTES_ALLOW_ADOPTION": "true", "CHUTES_LEDGER_NAMESPACE": "ledger-env"}
    settings = load_settings(environ)
    assert settings.allow_adoption is True and settings.ledger_namespace == "ledger-env"
    args = build_parser().parse_args(["run", "--no-allow-adoption", "--ledger-namespace", "ledger-flag"])
    settings = settings_from_args(args, environ)
    assert settings.allow_adoption is False and settings.ledger_namespace == "ledger-flag"
    args = build_parser().parse_args(["run", "--allow-adoption"])
    assert settings_from_args(args, {}).allow_adoption is True
    assert settings_from_args(build_parser().parse_args(["run"]), environ).allow_adoption is True  # not given


def test_plan_describes_the_installations_adoption_setting() -> None:
    args = build_parser().parse_args(["plan", "-f", "x.yaml", "--allow-adoption"])
    assert args.allow_adoption is True
    assert build_parser().parse_args(["plan", "-f", "x.yaml"]).allow_adoption is None


def test_auto_priority_ranks_the_longest_running_replica_highest_whatever_the_pod_names() -> None:
    settings = load_settings({"CHUTES_PRIORITY": "auto"})
    started = 1.8e9  # epoch seconds

    def priority(pod: str, at: float) -> int:
        return settings.peering_priority({"POD_ID": pod}, started=at)

    for old, new in (("op-aaaa", "op-zzzz"), ("op-zzzz", "op-aaaa"), ("chutes-operator-5d8c7f-old",
                                                                       "chutes-operator-7b9f4d-new")):
        assert priority(old, started) > priority(new, started + 0.002), (old, new)  # 2 ms later is lower
        assert priority(old, started) > priority(new, started + 86400 * 365)
    assert priority("op-aaaa", started) != priority("op-zzzz", started)  # same instant: the name breaks the tie
    assert priority("op-aaaa", started) == priority("op-aaaa", started)  # stable
    # Below explicit priorities and the earlier Pod-name-only 'auto' (1..2**31-1), within int64.
    assert -(2**62) <= priority("op-aaaa", 4.0e9) < priority("op-aaaa", 0.0) < 0
    assert load_settings({"CHUTES_PRIORITY": "7"}).peering_priority({"POD_ID": "x"}) == 7


def test_every_setting_is_in_the_readmes_settings_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `CHUTES_")]
    missing = [name for name in Settings.model_fields if not any(f"`CHUTES_{name.upper()}`" in row for row in rows)]
    assert missing == []
