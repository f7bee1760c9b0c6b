"""Settings: defaults, the TOML file, environment overrides, and every way a value is refused."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from voiceplane import __version__
from voiceplane.config import (
    Config,
    ConfigError,
    HostPort,
    env_var_name,
    load_config,
    section_models,
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voiceplane.toml"
    path.write_text(text)
    return path


def config_error(path: Path | None, environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)
    return caught.value


# --- defaults ------------------------------------------------------------------------------


def test_defaults_match_the_design() -> None:
    config = load_config(None, {})

    assert str(config.api.listen) == "127.0.0.1:8080"
    assert str(config.sip.listen) == "127.0.0.1:5060"
    assert config.sip.transports == ("udp", "tcp")
    assert config.sip.user_agent == f"voiceplane/{__version__}"
    assert (config.sip.t1_ms, config.sip.t2_ms, config.sip.t4_ms) == (500, 4000, 5000)
    assert config.trunk.host is None
    assert config.trunk.is_sandbox
    assert config.trunk.transport == "udp"
    assert config.trunk.username is None
    assert config.trunk.password is None
    assert config.trunk.realm is None
    assert config.store.url == ""
    assert config.data.dir == Path("./voiceplane-data")
    assert str(config.sandbox.listen) == "127.0.0.1:5070"


def test_empty_store_url_means_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(tmp_path / "data")})

    assert config.effective_store_url == f"sqlite:///{tmp_path}/data/voiceplane.db"


def test_relative_data_dir_gives_an_absolute_sqlite_path() -> None:
    url = load_config(None, {}).effective_store_url

    assert url == f"sqlite:///{Path.cwd() / 'voiceplane-data' / 'voiceplane.db'}"
    assert url.startswith("sqlite:////")


def test_explicit_store_url_is_used_as_is() -> None:
    url = "postgresql://voice@db.example.com/voiceplane"

    assert load_config(None, {"VOICEPLANE_STORE_URL": url}).effective_store_url == url


def test_config_is_frozen() -> None:
    config = load_config(None, {})

    with pytest.raises(ValidationError):
        config.api.listen = HostPort.parse("0.0.0.0:1")


def test_every_key_has_its_environment_variable() -> None:
    names = {
        env_var_name(section, key)
        for section, model in section_models().items()
        for key in model.model_fields
    }

    assert {
        "VOICEPLANE_API_LISTEN",
        "VOICEPLANE_SIP_LISTEN",
        "VOICEPLANE_SIP_TRANSPORTS",
        "VOICEPLANE_SIP_USER_AGENT",
        "VOICEPLANE_SIP_T1_MS",
        "VOICEPLANE_TRUNK_HOST",
        "VOICEPLANE_TRUNK_TRANSPORT",
        "VOICEPLANE_TRUNK_PASSWORD",
        "VOICEPLANE_STORE_URL",
        "VOICEPLANE_DATA_DIR",
        "VOICEPLANE_SANDBOX_LISTEN",
        "VOICEPLANE_SANDBOX_TRANSPORTS",
        "VOICEPLANE_SANDBOX_ANSWER_AFTER_MS",
        "VOICEPLANE_SANDBOX_REJECT_AFTER_MS",
        "VOICEPLANE_SANDBOX_HOLD_S",
        "VOICEPLANE_SANDBOX_RULES",
    } <= names


# --- the file and the environment ----------------------------------------------------------

FULL_FILE = """
[api]
listen = "0.0.0.0:9000"

[sip]
listen = "[::1]:5080"
transports = ["tcp"]
user_agent = "acme-pbx/2"
t1_ms = 250
t2_ms = 2000
t4_ms = 3000

[trunk]
host = "sip.operator.example:5061"
transport = "tcp"
username = "acme"
password = "s3cret"
realm = "operator.example"

[store]
url = "postgresql://voice@localhost/voiceplane"

[data]
dir = "/var/lib/voiceplane"

[sandbox]
listen = "127.0.0.1:5090"
"""


def test_file_sets_every_key(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_FILE), {})

    assert config.api.listen == HostPort(host="0.0.0.0", port=9000)
    assert config.sip.listen == HostPort(host="::1", port=5080)
    assert str(config.sip.listen) == "[::1]:5080"
    assert config.sip.listen.is_ipv6
    assert config.sip.transports == ("tcp",)
    assert config.sip.user_agent == "acme-pbx/2"
    assert (config.sip.t1_ms, config.sip.t2_ms, config.sip.t4_ms) == (250, 2000, 3000)
    assert config.trunk.host == HostPort(host="sip.operator.example", port=5061)
    assert not config.trunk.is_sandbox
    assert config.trunk.transport == "tcp"
    assert config.trunk.username == "acme"
    assert config.trunk.password is not None
    assert config.trunk.password.get_secret_value() == "s3cret"
    assert config.trunk.realm == "operator.example"
    assert config.effective_store_url == "postgresql://voice@localhost/voiceplane"
    assert config.data.dir == Path("/var/lib/voiceplane")
    assert str(config.sandbox.listen) == "127.0.0.1:5090"


def test_password_is_not_shown_in_repr(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_FILE), {})

    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config)


def test_partial_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, "[sip]\nt1_ms = 300\n"), {})

    assert config.sip.t1_ms == 300
    assert config.sip.t2_ms == 4000
    assert str(config.api.listen) == "127.0.0.1:8080"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, FULL_FILE)
    environ = {
        "VOICEPLANE_API_LISTEN": "127.0.0.1:8181",
        "VOICEPLANE_SIP_LISTEN": "127.0.0.1:5062",
        "VOICEPLANE_SIP_TRANSPORTS": "udp, TCP",
        "VOICEPLANE_SIP_T1_MS": "100",
        "VOICEPLANE_TRUNK_HOST": "",
        "VOICEPLANE_TRUNK_TRANSPORT": "udp",
        "VOICEPLANE_STORE_URL": "",
        "VOICEPLANE_DATA_DIR": str(tmp_path),
        "VOICEPLANE_SANDBOX_LISTEN": "127.0.0.1:5071",
    }

    config = load_config(path, environ)

    assert str(config.api.listen) == "127.0.0.1:8181"
    assert str(config.sip.listen) == "127.0.0.1:5062"
    assert config.sip.transports == ("udp", "tcp")
    assert config.sip.t1_ms == 100
    assert config.sip.t2_ms == 2000  # from the file
    assert config.trunk.host is None  # empty: back to the sandbox operator
    assert config.trunk.transport == "udp"
    assert config.trunk.username == "acme"  # from the file
    assert config.effective_store_url == f"sqlite:///{tmp_path}/voiceplane.db"
    assert str(config.sandbox.listen) == "127.0.0.1:5071"


def test_environment_alone_sets_keys() -> None:
    environ = {
        "VOICEPLANE_TRUNK_HOST": "10.0.0.7:5060",
        "VOICEPLANE_TRUNK_USERNAME": "acme",
        "VOICEPLANE_TRUNK_PASSWORD": "pw",
        "VOICEPLANE_SIP_USER_AGENT": "custom",
    }

    config = load_config(None, environ)

    assert config.trunk.host == HostPort(host="10.0.0.7", port=5060)
    assert config.trunk.password is not None
    assert config.trunk.password.get_secret_value() == "pw"
    assert config.sip.user_agent == "custom"


def test_unknown_voiceplane_variables_and_others_are_ignored() -> None:
    environ = {"VOICEPLANE_NOPE": "x", "VOICEPLANE_API_PORT": "1", "HOME": "/root"}

    assert load_config(None, environ) == load_config(None, {})


def test_environment_is_not_read_from_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEPLANE_API_LISTEN", "not an address")

    assert str(load_config(None, {}).api.listen) == "127.0.0.1:8080"


# --- host:port -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:5060", "127.0.0.1", 5060),
        ("localhost:80", "localhost", 80),
        ("sip-1.example.com:5061", "sip-1.example.com", 5061),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("[::1]:5060", "::1", 5060),
        ("[2001:db8::10]:65535", "2001:db8::10", 65535),
        ("  127.0.0.1:8080 ", "127.0.0.1", 8080),
    ],
)
def test_host_port_parses(text: str, host: str, port: int) -> None:
    assert HostPort.parse(text) == HostPort(host=host, port=port)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:", "is not a number"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:-1", "is not a number"),
        ("127.0.0.1:65536", "out of range"),
        (":5060", "host is empty"),
        ("::1:5060", "must be in brackets"),
        ("[::1]5060", "[IPv6 address]:port"),
        ("[::1:5060", "[IPv6 address]:port"),
        ("[not-v6]:5060", "not a valid IPv6 address"),
        ("bad host:5060", "not a valid host name"),
    ],
)
def test_host_port_refuses(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("[", r"\[")):
        HostPort.parse(text)


# --- refused values: each names the key and where it came from ------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "key", "complaint"),
    [
        ("VOICEPLANE_API_LISTEN", "8080", "api.listen", "expected host:port"),
        ("VOICEPLANE_API_LISTEN", "", "api.listen", "expected host:port"),
        ("VOICEPLANE_SIP_LISTEN", "::1:5060", "sip.listen", "brackets"),
        ("VOICEPLANE_SIP_LISTEN", "127.0.0.1:99999", "sip.listen", "out of range"),
        ("VOICEPLANE_SIP_TRANSPORTS", "udp,sctp", "sip.transports[1]", "'udp' or 'tcp'"),
        ("VOICEPLANE_SIP_TRANSPORTS", "udp,udp", "sip.transports", "twice"),
        ("VOICEPLANE_SIP_USER_AGENT", "a\r\nVia: x", "sip.user_agent", "printable"),
        ("VOICEPLANE_SIP_USER_AGENT", " ", "sip.user_agent", "non-empty"),
        ("VOICEPLANE_SIP_T1_MS", "0", "sip.t1_ms", "greater than 0"),
        ("VOICEPLANE_SIP_T2_MS", "-5", "sip.t2_ms", "greater than 0"),
        ("VOICEPLANE_SIP_T4_MS", "soon", "sip.t4_ms", "valid integer"),
        ("VOICEPLANE_SIP_T2_MS", "400", "sip.t2_ms", "smaller than sip.t1_ms"),
        ("VOICEPLANE_TRUNK_HOST", "sip.example.com", "trunk.host", "expected host:port"),
        ("VOICEPLANE_TRUNK_HOST", "sip.example.com:0", "trunk.host", "port must not be 0"),
        ("VOICEPLANE_TRUNK_TRANSPORT", "tls", "trunk.transport", "'udp' or 'tcp'"),
        ("VOICEPLANE_STORE_URL", "voiceplane.db", "store.url", "database URL"),
        ("VOICEPLANE_DATA_DIR", "", "data.dir", "must not be empty"),
        ("VOICEPLANE_SANDBOX_LISTEN", "[::1]", "sandbox.listen", "[IPv6 address]:port"),
    ],
)
def test_bad_environment_value_names_key_and_variable(
    variable: str, value: str, key: str, complaint: str
) -> None:
    error = config_error(None, {variable: value})

    assert [issue.key for issue in error.issues] == [key]
    assert error.issues[0].source == f"environment variable {variable}"
    assert complaint in error.issues[0].message
    assert key in str(error)
    assert variable in str(error)


@pytest.mark.parametrize(
    ("toml", "key", "complaint"),
    [
        ('[api]\nlisten = "nowhere"\n', "api.listen", "expected host:port"),
        ("[api]\nlisten = 8080\n", "api.listen", "'host:port' string"),
        ('[sip]\nlisten = "[zz]:1"\n', "sip.listen", "not a valid IPv6 address"),
        ('[sip]\ntransports = ["udp", "ws"]\n', "sip.transports[1]", "'udp' or 'tcp'"),
        ("[sip]\ntransports = []\n", "sip.transports", "at least one transport"),
        ("[sip]\ntransports = 5\n", "sip.transports", "tuple"),
        ("[sip]\nt1_ms = -1\n", "sip.t1_ms", "greater than 0"),
        ("[sip]\nt4_ms = true\n", "sip.t4_ms", "milliseconds"),
        ("[sip]\nt4_ms = 1.5\n", "sip.t4_ms", "fractional part"),
        ('[trunk]\nhost = "sip.example.com"\n', "trunk.host", "expected host:port"),
        ('[trunk]\ntransport = "sctp"\n', "trunk.transport", "'udp' or 'tcp'"),
        ('[trunk]\nhost = "a:1"\nusername = "u"\n', "trunk.password", "password is required"),
        ('[trunk]\npassword = "p"\n', "trunk.password", "username is required"),
        ("[store]\nurl = 3\n", "store.url", "valid string"),
        ('[store]\nurl = "nope"\n', "store.url", "database URL"),
        ('[data]\ndir = ""\n', "data.dir", "must not be empty"),
        ('[sandbox]\nlisten = "localhost"\n', "sandbox.listen", "expected host:port"),
    ],
)
def test_bad_file_value_names_key_and_file(
    tmp_path: Path, toml: str, key: str, complaint: str
) -> None:
    path = write_toml(tmp_path, toml)

    error = config_error(path, {})

    assert [issue.key for issue in error.issues] == [key]
    assert error.issues[0].source == f"config file {path}"
    assert complaint in error.issues[0].message
    assert str(path) in str(error)


def test_password_value_is_never_echoed() -> None:
    error = config_error(None, {"VOICEPLANE_TRUNK_PASSWORD": "hunter2"})

    assert "hunter2" not in str(error)


def test_bad_value_is_echoed_for_other_keys() -> None:
    error = config_error(None, {"VOICEPLANE_SIP_T1_MS": "-7"})

    assert "'-7'" in str(error)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[api]\nlisten = "x"\n')

    error = config_error(path, {"VOICEPLANE_SIP_T1_MS": "0"})

    assert {(issue.key, issue.source) for issue in error.issues} == {
        ("api.listen", f"config file {path}"),
        ("sip.t1_ms", "environment variable VOICEPLANE_SIP_T1_MS"),
    }


def test_environment_can_fix_a_bad_file_value(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[api]\nlisten = "x"\n')

    config = load_config(path, {"VOICEPLANE_API_LISTEN": "127.0.0.1:1234"})

    assert config.api.listen.port == 1234


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[sip]\nlisten = "127.0.0.1:5060"\nt1 = 500\n')

    error = config_error(path, {})

    assert [issue.key for issue in error.issues] == ["sip.t1"]
    assert error.issues[0].source == f"config file {path}"
    assert "unknown key" in error.issues[0].message
    assert "t1_ms" in error.issues[0].message  # the known keys, to spot the typo


def test_unknown_section_in_file_is_an_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[apii]\nlisten = "127.0.0.1:1"\n')

    error = config_error(path, {})

    assert [issue.key for issue in error.issues] == ["[apii]"]
    assert "unknown section" in error.issues[0].message
    assert "[api]" in error.issues[0].message


def test_top_level_key_in_file_is_an_unknown_section(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'listen = "127.0.0.1:1"\n')

    assert "unknown section" in str(config_error(path, {}))


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'api = "127.0.0.1:1"\n')

    error = config_error(path, {"VOICEPLANE_API_LISTEN": "127.0.0.1:2"})

    assert [issue.key for issue in error.issues] == ["[api]"]
    assert "must be a table" in error.issues[0].message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    error = config_error(path, {})

    assert str(path) in str(error)
    assert "cannot read" in str(error)


def test_directory_instead_of_file_is_an_error(tmp_path: Path) -> None:
    assert "cannot read" in str(config_error(tmp_path, {}))


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[api\nlisten = \n")

    error = config_error(path, {})

    assert str(path) in str(error)
    assert "not valid TOML" in str(error)


def test_config_can_be_built_directly_for_tests() -> None:
    config = Config(api={"listen": "127.0.0.1:1"})  # type: ignore[arg-type]

    assert config.api.listen.port == 1


def test_media_address_defaults_to_the_sip_address() -> None:
    config = load_config(None, {})
    assert config.media_address == "127.0.0.1"
    assert (config.media.rtp_port_min, config.media.rtp_port_max) == (20000, 30000)
    config = load_config(None, {"VOICEPLANE_MEDIA_ADDRESS": "10.0.0.5"})
    assert config.media_address == "10.0.0.5"


def test_a_wildcard_sip_address_needs_a_media_address() -> None:
    with pytest.raises(ConfigError, match=r"set \[media\] address"):
        load_config(None, {"VOICEPLANE_SIP_LISTEN": "0.0.0.0:5060"})
    config = load_config(
        None, {"VOICEPLANE_SIP_LISTEN": "0.0.0.0:5060", "VOICEPLANE_MEDIA_ADDRESS": "192.0.2.1"}
    )
    assert config.media_address == "192.0.2.1"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"VOICEPLANE_MEDIA_ADDRESS": "0.0.0.0"}, "not an address the far end"),
        ({"VOICEPLANE_MEDIA_ADDRESS": "media.example"}, "not an IP address"),
        (
            {"VOICEPLANE_MEDIA_RTP_PORT_MIN": "30000", "VOICEPLANE_MEDIA_RTP_PORT_MAX": "30000"},
            "must be above rtp_port_min",
        ),
    ],
)
def test_bad_media_settings_name_the_key(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        load_config(None, env)
    assert "media." in str(caught.value)
