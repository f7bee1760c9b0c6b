"""Settings: an optional TOML file, overridden by ``VOICEPLANE_<SECTION>_<KEY>`` variables.

Every section of the file is one frozen pydantic model; :class:`Config` holds them all.
:func:`load_config` is the only way in: it reads the file, lays the environment over it and
validates the result, turning every problem into a :class:`ConfigError` that names the key
and where the bad value came from (the file or the environment variable).
"""

import ipaddress
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from voiceplane import __version__

ENV_PREFIX = "VOICEPLANE_"
DEFAULT_SOURCE = "the default value"
SECRET_KEYS = frozenset({("trunk", "password"), ("api", "admin_key")})

Transport = Literal["udp", "tcp"]


def _split_transports(value: object) -> object:
    """``"udp, TCP"`` (one string, as an environment variable gives it) or a list."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return tuple(item.strip().lower() if isinstance(item, str) else item for item in value)
    return value


def _distinct_transports(value: tuple[Transport, ...]) -> tuple[Transport, ...]:
    if not value:
        raise ValueError("at least one transport is needed (udp, tcp)")
    if len(set(value)) != len(value):
        raise ValueError("a transport is listed twice")
    return value


# The SIP transports a listener runs ([sip] and [sandbox] transports).
Transports = Annotated[
    tuple[Transport, ...],
    BeforeValidator(_split_transports),
    AfterValidator(_distinct_transports),
]

_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")
_DB_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class ConfigIssue:
    """One bad setting: its dotted key, where its value came from, and what is wrong."""

    key: str
    source: str
    message: str

    def __str__(self) -> str:
        where = f"{self.key} (from {self.source})" if self.key else self.source
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The settings cannot be used; ``str()`` is a message fit for the user."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__(_describe(self.issues))


def _describe(issues: Sequence[ConfigIssue]) -> str:
    if len(issues) == 1:
        return f"invalid configuration: {issues[0]}"
    return "invalid configuration:\n" + "\n".join(f"  {issue}" for issue in issues)


# --- host:port -----------------------------------------------------------------------------


class HostPort(BaseModel):
    """A ``host:port`` address; IPv6 hosts are written ``[::1]:5060`` and kept without brackets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(ge=0, le=65535)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, host: str) -> str:
        _check_host(host)
        return host

    @classmethod
    def parse(cls, text: str) -> "HostPort":
        """Parse ``host:port`` or ``[ipv6]:port``; raise ``ValueError`` with a clear message."""
        host, port = _split_host_port(text.strip())
        _check_host(host)
        return cls(host=host, port=port)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"


def _split_host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, closing, rest = text[1:].partition("]")
        if not closing or not rest.startswith(":"):
            raise ValueError("expected [IPv6 address]:port, like [::1]:5060")
        if ":" not in host:
            raise ValueError(f"{host!r} is not a valid IPv6 address")
        return host, _parse_port(rest[1:])
    host, colon, port = text.rpartition(":")
    if not colon:
        raise ValueError("expected host:port, like 127.0.0.1:5060")
    if ":" in host:
        raise ValueError("an IPv6 address must be in brackets, like [::1]:5060")
    return host, _parse_port(port)


def _parse_port(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def _check_host(host: str) -> None:
    if not host:
        raise ValueError("the host is empty")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid host name or IPv4 address")


def _to_host_port(value: object) -> object:
    if isinstance(value, str):
        return HostPort.parse(value)
    if isinstance(value, HostPort | dict):
        return value
    raise ValueError("expected a 'host:port' string")


def _to_optional_host_port(value: object) -> object:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _to_host_port(value)


Address = Annotated[HostPort, BeforeValidator(_to_host_port)]
OptionalAddress = Annotated[HostPort | None, BeforeValidator(_to_optional_host_port)]


def _address(text: str) -> HostPort:
    return HostPort.parse(text)


def _reject_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a number of milliseconds")
    return value


def _empty_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


Milliseconds = Annotated[int, BeforeValidator(_reject_bool), Field(gt=0)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]


# --- sections ------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiSettings(_Section):
    """``[api]``: the HTTP API."""

    listen: Address = Field(default_factory=lambda: _address("127.0.0.1:8080"))
    # The key of the platform-wide admin API (/v1/admin/...); unset: that API refuses all.
    admin_key: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    # A line per HTTP request in serve's log. Off by default: the calls are in the store with
    # every outcome, and the line cost about 26 µs of CPU a request.
    access_log: bool = False


class SipSettings(_Section):
    """``[sip]``: our SIP endpoint and its RFC 3261 timers."""

    listen: Address = Field(default_factory=lambda: _address("127.0.0.1:5060"))
    transports: Transports = ("udp", "tcp")
    user_agent: str = f"voiceplane/{__version__}"
    t1_ms: Milliseconds = 500
    t2_ms: Milliseconds = 4000
    t4_ms: Milliseconds = 5000

    @field_validator("user_agent")
    @classmethod
    def _printable_user_agent(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("must be a non-empty line of printable text")
        return value

    @field_validator("t2_ms")
    @classmethod
    def _t2_not_below_t1(cls, value: int, info: ValidationInfo) -> int:
        t1 = info.data.get("t1_ms")
        if t1 is not None and value < t1:
            raise ValueError(f"must not be smaller than sip.t1_ms ({t1})")
        return value


_NonNegative = Annotated[float, BeforeValidator(_reject_bool), Field(ge=0, allow_inf_nan=False)]


class TrunkSettings(_Section):
    """``[trunk]``: the operator's SIP trunk; no host means the built-in sandbox operator."""

    host: OptionalAddress = None
    transport: Transport = "udp"
    username: OptionalText = None
    password: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = Field(
        default=None, validate_default=True
    )
    realm: OptionalText = None
    # Capacity (voiceplane.policy): new calls a second the operator accepts (0: unlimited),
    # the burst above it (0: a tenth of a second's worth), and how long a call may wait for
    # a free channel of its bridge or account before it ends MAX-USE (a call may say).
    max_cps: _NonNegative = 0
    cps_burst: Annotated[int, BeforeValidator(_reject_bool), Field(ge=0)] = 0
    queue_timeout: _NonNegative = 300

    @field_validator("host")
    @classmethod
    def _host_has_port(cls, value: HostPort | None) -> HostPort | None:
        if value is not None and value.port == 0:
            raise ValueError("the trunk's port must not be 0")
        return value

    @field_validator("transport", mode="before")
    @classmethod
    def _lower_transport(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("password")
    @classmethod
    def _credentials_in_pairs(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        username = info.data.get("username")
        if username is not None and value is None:
            raise ValueError("trunk.username is set, so trunk.password is required")
        if username is None and value is not None and "username" in info.data:
            raise ValueError("trunk.password is set, so trunk.username is required")
        return value

    @property
    def is_sandbox(self) -> bool:
        """True when no trunk is configured and the built-in operator takes its place."""
        return self.host is None


class StoreSettings(_Section):
    """``[store]``: the database; an empty URL means a SQLite file in the data directory."""

    url: str = ""

    @field_validator("url")
    @classmethod
    def _looks_like_url(cls, value: str) -> str:
        value = value.strip()
        if value and not _DB_URL.match(value):
            raise ValueError("expected a database URL like postgresql://user@host/db")
        return value


class DataSettings(_Section):
    """``[data]``: where voiceplane keeps its files."""

    dir: Path = Path("voiceplane-data")

    @field_validator("dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()


SandboxAction = Literal["answer", "ring", "reject"]

_SANDBOX_NUMBER = re.compile(r"\+?[0-9]{1,32}")
_SANDBOX_DIGITS = re.compile(r"[0-9]{1,32}")
_RULE_EXAMPLE = '[{ suffix = "486", code = 486 }, { match = "+15550100", action = "answer" }]'


def _reject_bool_seconds(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    return value


DelayMs = Annotated[int, BeforeValidator(_reject_bool), Field(ge=0)]
Seconds = Annotated[float, BeforeValidator(_reject_bool_seconds), Field(ge=0, allow_inf_nan=False)]


class SandboxRule(_Section):
    """One entry of ``sandbox.rules``: for the numbers it matches, what the sandbox does.

    ``match`` (the whole number), ``prefix`` and ``suffix`` select numbers; all the ones given
    must match, and a leading ``+`` is ignored on both sides. ``action`` is ``reject`` when a
    ``code`` is given, else ``answer``.
    """

    match: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    action: SandboxAction
    code: int | None = Field(default=None, ge=400, le=699)
    reason: str | None = None
    cause: int | None = Field(default=None, ge=1, le=127)
    after_ms: DelayMs | None = None
    hold_s: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys_and_default_action(cls, data: object) -> object:
        if not isinstance(data, dict):
            raise ValueError(f"each rule must be a table, like {_RULE_EXAMPLE}")
        unknown = sorted(str(key) for key in data if key not in cls.model_fields)
        if unknown:
            known = ", ".join(cls.model_fields)
            raise ValueError(f"unknown key {unknown[0]!r} in a rule (known: {known})")
        if "action" not in data:
            data = {**data, "action": "reject" if data.get("code") is not None else "answer"}
        return data

    @field_validator("match", "prefix")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        if value is not None and not _SANDBOX_NUMBER.fullmatch(value):
            raise ValueError("must be digits with an optional leading +, like +15550100")
        return value

    @field_validator("suffix")
    @classmethod
    def _digits(cls, value: str | None) -> str | None:
        if value is not None and not _SANDBOX_DIGITS.fullmatch(value):
            raise ValueError("must be digits, like 486")
        return value

    @field_validator("reason")
    @classmethod
    def _printable_reason(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("must be a non-empty line of printable text")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> "SandboxRule":
        if self.match is None and self.prefix is None and self.suffix is None:
            raise ValueError("a rule needs match, prefix or suffix to say which numbers it takes")
        if self.action == "reject" and self.code is None:
            raise ValueError('action = "reject" needs a code (400-699)')
        if self.action != "reject":
            given = [k for k in ("code", "reason", "cause") if getattr(self, k) is not None]
            if given:
                raise ValueError(f'{given[0]} only goes with action = "reject"')
        if self.action != "answer" and self.hold_s is not None:
            raise ValueError('hold_s only goes with action = "answer"')
        if self.action == "ring" and self.after_ms is not None:
            raise ValueError('after_ms does not go with action = "ring": it rings until cancelled')
        return self


def _rules_from_text(value: object) -> object:
    """``VOICEPLANE_SANDBOX_RULES``: the TOML array of the file (or JSON), as one string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return ()
    try:
        return tomllib.loads(f"rules = {text}")["rules"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"expected a TOML array of tables, like {_RULE_EXAMPLE}") from None


class SandboxSettings(_Section):
    """``[sandbox]``: the built-in operator, its address and how it treats dialled numbers.

    By default a number ending in 400-699 is rejected with that code after
    ``reject_after_ms``, one ending in 000 rings until the caller gives up, and any other
    is answered after ``answer_after_ms`` and hung up ``hold_s`` seconds later (0: never).
    ``rules`` are tried first, in order.
    """

    listen: Address = Field(default_factory=lambda: _address("127.0.0.1:5070"))
    transports: Transports = ("udp", "tcp")
    answer_after_ms: DelayMs = 1000
    reject_after_ms: DelayMs = 200
    hold_s: Seconds = 20.0
    rules: Annotated[tuple[SandboxRule, ...], BeforeValidator(_rules_from_text)] = ()


MediaBackendName = Literal["embedded", "rtpengine"]


class MediaSettings(_Section):
    """``[media]``: prompts and digits, in this process or through rtpengine.

    ``backend`` ``embedded`` runs RTP in this process: ``address`` is the IP address put in
    our SDP, where the far end sends RTP; empty means the SIP listen address, which must then
    be a specific one (not 0.0.0.0 or ::). ``rtpengine`` drives the rtpengine at
    ``rtpengine_ng`` (its ``--listen-ng``); ``address`` is then where rtpengine reaches us,
    and ``rtpengine_dtmf_log`` where we listen for its ``--dtmf-log-dest`` (empty: no digits).
    """

    backend: MediaBackendName = "embedded"
    address: OptionalText = None
    rtp_port_min: int = Field(default=20000, ge=1024, le=65534)
    rtp_port_max: int = Field(default=30000, ge=1025, le=65535)
    rtpengine_ng: Address = Field(default_factory=lambda: _address("127.0.0.1:2223"))
    rtpengine_dtmf_log: OptionalAddress = Field(
        default_factory=lambda: _address("127.0.0.1:2224")
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _lower_backend(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("rtpengine_ng")
    @classmethod
    def _ng_has_port(cls, value: HostPort) -> HostPort:
        if value.port == 0:
            raise ValueError("rtpengine's ng port must not be 0")
        return value

    @field_validator("address")
    @classmethod
    def _an_ip_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        if address.is_unspecified:
            raise ValueError(f"{value} is not an address the far end can send RTP to")
        return value

    @field_validator("rtp_port_max")
    @classmethod
    def _range_not_empty(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("rtp_port_min")
        if low is not None and value < low + 1:
            raise ValueError(f"must be above rtp_port_min ({low}): an RTP port needs a pair")
        return value


class CallbacksSettings(_Section):
    """``[callbacks]``: how status callbacks are sent (voiceplane.callbacks.dispatcher).

    One attempt may take ``total_timeout_s`` (``connect_timeout_s`` of it to connect). A
    failed one is retried after a random wait of up to ``first_retry_s`` doubled per
    failure (never above ``max_retry_s``), until ``retry_for_s`` after the callback was
    written; then it is given up (it stays, with its attempts, in the API). At most
    ``per_destination`` requests are open to one receiver (scheme, host and port) at once.
    A callback being sent is nobody else's for ``lease_s``: after a crash it is sent again
    once that has passed (receivers drop the duplicate by its ``webhook-id``).
    """

    connect_timeout_s: float = Field(default=5.0, gt=0)
    total_timeout_s: float = Field(default=15.0, gt=0)
    first_retry_s: float = Field(default=5.0, gt=0)
    max_retry_s: float = Field(default=1800.0, gt=0)
    retry_for_s: float = Field(default=24 * 3600.0, gt=0)
    per_destination: int = Field(default=32, ge=1, le=10_000)
    lease_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> "CallbacksSettings":
        if self.lease_s <= self.total_timeout_s:
            raise ValueError(
                f"lease_s ({self.lease_s:g}) must be longer than total_timeout_s "
                f"({self.total_timeout_s:g}): a lease must outlast the attempt it covers"
            )
        return self


class Config(_Section):
    """All settings. Build it with :func:`load_config`."""

    api: ApiSettings = Field(default_factory=ApiSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    trunk: TrunkSettings = Field(default_factory=TrunkSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    callbacks: CallbacksSettings = Field(default_factory=CallbacksSettings)

    @model_validator(mode="after")
    def _media_address_known(self) -> "Config":
        if self.media.address is None and not _is_specific_ip(self.sip.listen.host):
            raise ValueError(
                f"[sip] listen is {self.sip.listen.host}, so set [media] address "
                "(VOICEPLANE_MEDIA_ADDRESS) to the IP address RTP should reach"
            )
        return self

    @property
    def media_address(self) -> str:
        """Where the far end sends RTP: ``[media] address``, else the SIP listen host."""
        return self.media.address or self.sip.listen.host

    @property
    def effective_store_url(self) -> str:
        """``store.url``, or the SQLite file ``<data.dir>/voiceplane.db`` when it is empty."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.data.dir / 'voiceplane.db').absolute()}"


def _is_specific_ip(host: str) -> bool:
    """An IP address the far end can send to (not a host name, not 0.0.0.0 or ::)."""
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


# --- loading -------------------------------------------------------------------------------


def env_var_name(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def section_models() -> dict[str, type[_Section]]:
    """The sections of :class:`Config`, by name."""
    sections: dict[str, type[_Section]] = {}
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            sections[name] = annotation
    return sections


@dataclass
class _Layers:
    """The merged raw settings and, per ``(section, key)``, where each value came from."""

    values: dict[str, Any]
    sources: dict[tuple[str, str], str]
    file_source: str = DEFAULT_SOURCE


def load_config(path: Path | None, environ: Mapping[str, str]) -> Config:
    """Read ``path`` (if given), apply ``VOICEPLANE_*`` overrides from ``environ``, validate.

    Raises :class:`ConfigError` for an unreadable file, bad TOML, an unknown key or section in
    the file, or a value that does not validate. Unknown ``VOICEPLANE_*`` variables are ignored.
    """
    layers = _read_file(path) if path is not None else _Layers(values={}, sources={})
    _apply_environment(layers, environ)
    try:
        return Config.model_validate(layers.values)
    except ValidationError as exc:
        raise ConfigError([_issue(error, layers) for error in exc.errors()]) from None


def _read_file(path: Path) -> _Layers:
    source = f"config file {path}"
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise ConfigError([ConfigIssue("", source, f"cannot read it: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue("", source, f"not valid TOML: {exc}")]) from None
    sources = {
        (section, key): source
        for section, table in values.items()
        if isinstance(table, dict)
        for key in table
    }
    return _Layers(values=values, sources=sources, file_source=source)


def _apply_environment(layers: _Layers, environ: Mapping[str, str]) -> None:
    for section, model in section_models().items():
        for key in model.model_fields:
            name = env_var_name(section, key)
            if name not in environ:
                continue
            table = layers.values.setdefault(section, {})
            if isinstance(table, dict):  # a non-table section is reported as a file error
                layers.values[section] = {**table, key: environ[name]}
                layers.sources[(section, key)] = f"environment variable {name}"


def _issue(error: ErrorDetails, layers: _Layers) -> ConfigIssue:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    section = str(loc[0]) if loc else ""
    key = str(loc[1]) if len(loc) > 1 else None
    if error["type"] == "extra_forbidden":
        return _unknown_name_issue(section, key, layers)
    if not loc:  # a rule about several sections at once
        return ConfigIssue("", "the settings together", _clean_message(error["msg"]))
    if key is None:
        source = layers.file_source if section in layers.values else DEFAULT_SOURCE
        return ConfigIssue(f"[{section}]", source, _section_message(section, error))
    dotted = f"{section}.{key}" + "".join(f"[{part}]" for part in loc[2:])
    source = layers.sources.get((section, key)) or _section_source(section, layers)
    message = _clean_message(error["msg"]) + _shown_value(section, key, layers)
    return ConfigIssue(dotted, source, message)


def _section_source(section: str, layers: _Layers) -> str:
    """For a key left at its default: where the rest of its section was set, if anywhere."""
    for (other_section, _key), source in layers.sources.items():
        if other_section == section:
            return source
    return DEFAULT_SOURCE


def _unknown_name_issue(section: str, key: str | None, layers: _Layers) -> ConfigIssue:
    known = section_models()
    if key is None:
        names = ", ".join(f"[{name}]" for name in known)
        return ConfigIssue(f"[{section}]", layers.file_source, f"unknown section (known: {names})")
    keys = ", ".join(known[section].model_fields)
    return ConfigIssue(
        f"{section}.{key}", layers.file_source, f"unknown key (known in [{section}]: {keys})"
    )


def _section_message(section: str, error: ErrorDetails) -> str:
    if error["type"] in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a table, written [{section}] with its keys below"
    return _clean_message(error["msg"])


def _clean_message(message: str) -> str:
    return message.removeprefix("Value error, ")


def _shown_value(section: str, key: str, layers: _Layers) -> str:
    if (section, key) in SECRET_KEYS:
        return ""
    table = layers.values.get(section)
    if not isinstance(table, dict) or key not in table:
        return ""
    return f", got {table[key]!r}"
