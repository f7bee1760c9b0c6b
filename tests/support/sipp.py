"""Run SIPp as the other side of real SIP exchanges on loopback.

The conformance tests of our SIP user agent drive SIPp (3.6.x, ``/usr/bin/sipp``)
with the scenarios in ``tests/sipp_scenarios``:

* :class:`SippServer` runs a UAS scenario (SIPp is the operator, our UA calls it).
  Entering it returns once SIPp's socket is actually bound/listening.
* :class:`SippClient` runs a UAC scenario (SIPp calls our UA).
* :func:`render_scenario` renders the ``*.xml.tmpl`` scenarios (SIPp checks
  status codes when it loads a scenario, so there is one file per final code).
* :class:`SippResult` is what :meth:`SippServer.wait` / :meth:`SippClient.wait`
  return: exit code, SIPp's statistics, per-message counts, and every SIP
  message SIPp sent and received (parsed from its ``-trace_msg`` log).

Example, our UA calling SIPp::

    async def test_busy(tmp_path: Path) -> None:
        async with SippServer("uas_final", tmp_path, transport="udp",
                              values={"code": 486}) as sipp:
            outcome = await our_ua.call(sipp.uri("alice"))
            result = await sipp.wait()
        result.assert_ok()
        assert outcome.status == 486
        assert result.received("ACK")

Every SIPp gets its own directory under ``tmp_path`` (``sipp-<role>-<scenario>``)
with the rendered scenario, the command line and all of SIPp's logs; the
:meth:`SippResult.assert_ok` message names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import socket
import string
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Final, Literal, Self

import pytest

__all__ = [
    "DEFAULT_AUTH",
    "LOOPBACK",
    "SCENARIO_DIR",
    "SIPP_BIN",
    "SIP_REASONS",
    "PortKind",
    "SippClient",
    "SippError",
    "SippMessage",
    "SippResult",
    "SippServer",
    "SippStartupError",
    "Transport",
    "find_scenario",
    "free_port",
    "iter_scenarios",
    "parse_message_log",
    "render_scenario",
    "requires_sipp",
    "sipp_available",
]

Transport = Literal["udp", "tcp"]
PortKind = Literal["udp", "tcp", "both"]
Direction = Literal["sent", "received", "unexpected"]

#: Where the scenario files and templates live.
SCENARIO_DIR: Final[Path] = Path(__file__).resolve().parent.parent / "sipp_scenarios"
#: Everything runs on IPv4 loopback.
LOOPBACK: Final[str] = "127.0.0.1"
#: The SIPp executable (override with the SIPP_BIN environment variable).
SIPP_BIN: Final[str] = os.environ.get("SIPP_BIN") or shutil.which("sipp") or "/usr/bin/sipp"
#: Credentials passed to every SIPp unless ``auth=`` says otherwise: as -au/-ap (used by
#: the ``[authentication]`` keyword of UAC scenarios) and as ``-key auth_user``/``-key
#: auth_password`` (used by ``<verifyauth>`` in uas_auth.xml).
DEFAULT_AUTH: Final[tuple[str, str]] = ("sipp", "password")

_TRANSPORT_FLAG: Final[Mapping[Transport, str]] = {"udp": "u1", "tcp": "t1"}

#: Reason phrases used when a template gets a ``code`` but no ``reason``.
SIP_REASONS: Final[Mapping[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

#: Values a template gets when the caller does not give them.
_TEMPLATE_DEFAULTS: Final[Mapping[str, Mapping[str, object]]] = {
    "uas_final": {"extra_headers": "", "pause_ms": 0},
    "uas_no_answer": {"hold_ms": 3000},
}

#: Status codes each template accepts for ``code``.
_TEMPLATE_CODE_RANGE: Final[Mapping[str, tuple[int, int]]] = {
    "uas_final": (300, 699),
    "uac_expect_final": (300, 699),
}

#: Exit codes documented by ``sipp -h``. SIPp stopped by SIGTERM/SIGINT also exits 0
#: (even without any call), so a 0 alone proves nothing: assert_ok() counts calls too.
_EXIT_CODES: Final[Mapping[int, str]] = {
    0: "all calls were successful",
    1: "at least one call failed (or the scenario did not load)",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    254: "fatal error binding a socket (-2)",
    255: "fatal error (-1), e.g. the global -timeout was reached",
}


class SippError(RuntimeError):
    """SIPp could not be run as asked."""


class SippStartupError(SippError):
    """SIPp exited or did not bind its socket while starting."""


def sipp_available() -> bool:
    """Whether the SIPp executable can be found."""
    return shutil.which(SIPP_BIN) is not None


#: ``pytestmark = [pytest.mark.sipp, requires_sipp]`` skips where SIPp is not installed.
requires_sipp = pytest.mark.skipif(not sipp_available(), reason=f"SIPp ({SIPP_BIN}) not found")


# --------------------------------------------------------------------------- ports

_recent_ports: list[int] = []


def free_port(kind: PortKind = "udp", host: str = LOOPBACK) -> int:
    """Return a port that is free on ``host`` for both UDP and TCP right now.

    The port is bound with ``kind``'s protocol to ``(host, 0)`` and released, and is
    only returned if the other protocol can bind it too, so it works for SIPp over
    either transport and for a UA that listens on both. Ports handed out recently by
    this process are skipped. There is still a window between release and the next
    bind: SippServer retries with a new port when SIPp fails to bind (exit code 254).
    """
    if kind not in ("udp", "tcp", "both"):
        raise ValueError(f"kind must be 'udp', 'tcp' or 'both', not {kind!r}")
    first = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    other = socket.SOCK_DGRAM if first == socket.SOCK_STREAM else socket.SOCK_STREAM
    for _ in range(200):
        with socket.socket(socket.AF_INET, first) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            if port in _recent_ports:
                continue
            with socket.socket(socket.AF_INET, other) as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    continue
        _recent_ports.append(port)
        del _recent_ports[:-256]
        return port
    raise SippError(f"no port free for both UDP and TCP on {host}")


def _proc_net_bound(pid: int, port: int, transport: Transport) -> bool | None:
    """Whether process ``pid`` owns a UDP socket bound to / a TCP socket listening on
    ``port``, from /proc; None where /proc is not available."""
    fd_dir = Path(f"/proc/{pid}/fd")
    tables = ("udp", "udp6") if transport == "udp" else ("tcp", "tcp6")
    if not Path("/proc/net", tables[0]).exists():
        return None
    inodes: set[str] = set()
    try:
        for entry in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(entry)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return False
    if not inodes:
        return False
    for table in tables:
        try:
            lines = Path("/proc/net", table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) != port or inode not in inodes:
                continue
            if transport == "udp" or state == "0A":  # 0A: TCP_LISTEN
                return True
    return False


def _probe_bound(host: str, port: int, transport: Transport) -> bool:
    """Fallback without /proc: the port is taken if we cannot bind it."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


# ----------------------------------------------------------------------- scenarios


def find_scenario(name: str | os.PathLike[str]) -> Path:
    """Locate a scenario: a path, or a name in tests/sipp_scenarios with or without
    ``.xml`` / ``.xml.tmpl`` (``"uas_answer"``, ``"uas_final"``, ``"uas_final.xml"``)."""
    path = Path(name)
    if path.is_absolute() or len(path.parts) > 1:
        if not path.is_file():
            raise FileNotFoundError(f"SIPp scenario {path} does not exist")
        return path
    text = str(name)
    candidates = [text, f"{text}.xml", f"{text}.xml.tmpl"]
    if text.endswith(".xml"):
        candidates.append(f"{text}.tmpl")
    for candidate in candidates:
        if (SCENARIO_DIR / candidate).is_file():
            return SCENARIO_DIR / candidate
    available = sorted(p.name for p in SCENARIO_DIR.iterdir() if ".xml" in p.name)
    raise FileNotFoundError(f"no SIPp scenario {text!r} in {SCENARIO_DIR}; have {available}")


def _scenario_stem(path: Path) -> str:
    name = path.name
    for suffix in (".xml.tmpl", ".tmpl", ".xml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_template(path: Path) -> bool:
    return path.name.endswith(".tmpl")


_IDENTIFIER = r"[_a-zA-Z][_a-zA-Z0-9]*"
#: A placeholder alone on its line, e.g. "      $extra_headers".
_LINE_PLACEHOLDER = re.compile(
    rf"^(?P<indent>[ \t]*)\$(?:(?P<name>{_IDENTIFIER})|\{{(?P<braced>{_IDENTIFIER})\}})[ \t]*\r?\n",
    re.MULTILINE,
)


#: A pause of 0 ms, which a rendering drops. SIPp 3.6.1 parks a call that pauses for 0 ms
#: in its timer wheel, and about one call in 250 was never woken there: the message after
#: the pause went unsent until the call ended some other way (seen in CI and reproduced
#: in a loop: 3 stalls in 800 calls with the pause, none in 1,600 without).
_ZERO_PAUSE = re.compile(r'^[ \t]*<pause milliseconds="0+"[ \t]*/>[ \t]*\r?\n', re.MULTILINE)


def _value_lines(key: str, value: object) -> list[str]:
    """A template value as lines: a mapping gives ``Name: value`` lines, a sequence
    one line per item, anything else ``str(value)`` split on newlines."""
    if isinstance(value, Mapping):
        lines = [f"{k}: {v}" for k, v in value.items()]
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        lines = [str(item) for item in value]
    else:
        lines = str(value).splitlines()
    lines = [line.strip() for line in lines]
    for line in lines:
        if not line:
            raise ValueError(f"template value {key!r} has an empty line: {value!r}")
        if "]]>" in line:
            raise ValueError(f"template value {key!r} contains ']]>': {value!r}")
    return lines


def _render_template(text: str, values: Mapping[str, object], source: Path) -> str:
    stem = _scenario_stem(source)
    merged: dict[str, object] = dict(_TEMPLATE_DEFAULTS.get(stem, {}))
    merged.update(values)
    identifiers = set(string.Template(text).get_identifiers())
    if "code" in merged:
        try:
            code = int(str(merged["code"]))
        except ValueError:
            raise ValueError(
                f"{source.name}: code must be a number, not {merged['code']!r}"
            ) from None
        low, high = _TEMPLATE_CODE_RANGE.get(stem, (100, 699))
        if not low <= code <= high:
            raise ValueError(f"{source.name}: code must be in {low}-{high}, not {code}")
        merged["code"] = code
        if "reason" in identifiers and "reason" not in merged:
            merged["reason"] = SIP_REASONS.get(code, "Unknown")
    unknown = set(values) - identifiers
    if unknown:
        raise TypeError(
            f"{source.name} has no placeholder(s) {sorted(unknown)}; it takes {sorted(identifiers)}"
        )
    missing = identifiers - set(merged)
    if missing:
        raise KeyError(
            f"{source.name} needs value(s) {sorted(missing)} (SIPp variables are written "
            f"[$$name] in templates)"
        )

    def whole_line(match: re.Match[str]) -> str:
        key = match.group("name") or match.group("braced")
        lines = _value_lines(key, merged[key])
        return "".join(f"{match.group('indent')}{line}\n" for line in lines)

    text = _LINE_PLACEHOLDER.sub(whole_line, text)
    inline: dict[str, str] = {}
    for key in string.Template(text).get_identifiers():
        lines = _value_lines(key, merged[key])
        if len(lines) > 1:
            raise ValueError(f"template value {key!r} must be a single line where it is used")
        inline[key] = lines[0] if lines else ""
    return _ZERO_PAUSE.sub("", string.Template(text).substitute(inline))


def render_scenario(name: str | os.PathLike[str], tmp_path: Path, /, **values: object) -> Path:
    """Render scenario template ``name`` with ``values`` into ``tmp_path``.

    ``name`` is found by :func:`find_scenario`. Placeholders are ``string.Template``
    ones (``$code``, ``${reason}``); a SIPp variable must be written ``[$$var]`` in a
    template. A placeholder alone on its line (``$extra_headers``) takes a string, a
    sequence of lines or a mapping of header names to values, and the line disappears
    when the value is empty. Defaults: ``reason`` from :data:`SIP_REASONS` for
    ``code``; uas_final ``extra_headers=""``, ``pause_ms=0``; uas_no_answer
    ``hold_ms=3000``. Unknown or missing values raise.

    A plain ``.xml`` scenario (no values allowed) is copied unchanged. Returns the
    path of the rendered file, ``<stem>_<digest>.xml``, one per distinct rendering.
    """
    source = find_scenario(name)
    text = source.read_text(encoding="utf-8")
    if _is_template(source):
        text = _render_template(text, values, source)
    elif values:
        raise TypeError(f"{source.name} is not a template; it takes no values")
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = tmp_path / f"{_scenario_stem(source)}_{digest}.xml"
    target.write_text(text, encoding="utf-8")
    return target


# ------------------------------------------------------------------------ messages

_COMPACT_HEADERS: Final[Mapping[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "t": "to",
    "v": "via",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
    "x": "session-expires",
    "b": "referred-by",
}


def _canonical_header(name: str) -> str:
    lowered = name.strip().lower()
    return _COMPACT_HEADERS.get(lowered, lowered)


@dataclass(frozen=True)
class SippMessage:
    """One SIP message from SIPp's message log, seen from SIPp's side: ``received``
    messages came from the party under test, ``sent`` ones went to it."""

    direction: Direction
    transport: str
    text: str
    time: datetime | None
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @classmethod
    def parse(
        cls, direction: Direction, transport: str, text: str, time: datetime | None = None
    ) -> SippMessage:
        """Parse one message as SIPp logged it (CRLF line ends, body cut to
        Content-Length when there is one)."""
        head, separator, body = text.partition("\r\n\r\n")
        if not separator:
            head, _, body = text.partition("\n\n")
        lines = head.splitlines()
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation line
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
            elif ":" in line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        for name, value in headers:
            if _canonical_header(name) == "content-length" and value.isdigit():
                body = body.encode("utf-8", "surrogateescape")[: int(value)].decode(
                    "utf-8", "replace"
                )
                break
        start_line = lines[0].strip() if lines else ""
        return cls(direction, transport, text, time, start_line, tuple(headers), body)

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str | None:
        """The request method; None for a response (see :attr:`cseq_method`)."""
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def request_uri(self) -> str | None:
        parts = self.start_line.split(" ")
        return parts[1] if self.is_request and len(parts) >= 3 else None

    @property
    def status_code(self) -> int | None:
        if not self.is_response:
            return None
        parts = self.start_line.split(" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def reason(self) -> str | None:
        if not self.is_response:
            return None
        parts = self.start_line.split(" ", 2)
        return parts[2] if len(parts) > 2 else ""

    def header_values(self, name: str) -> list[str]:
        """All values of header ``name`` (case-insensitive, compact forms included),
        one per header line (comma-separated values are not split)."""
        wanted = _canonical_header(name)
        return [value for key, value in self.headers if _canonical_header(key) == wanted]

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def has_header(self, name: str) -> bool:
        return bool(self.header_values(name))

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("CSeq")
        if value is None:
            return None
        number, _, method = value.partition(" ")
        return (int(number), method.strip()) if number.isdigit() else None

    @property
    def cseq_method(self) -> str | None:
        cseq = self.cseq
        return cseq[1] if cseq else None

    def matches(self, what: str | int | None) -> bool:
        """``None`` matches anything, an int or digit string a status code, any other
        string a request method (responses never match a method)."""
        if what is None:
            return True
        if isinstance(what, int) or what.isdigit():
            return self.status_code == int(what)
        return self.method == what.upper()

    def __str__(self) -> str:
        return self.text


_SEPARATOR = re.compile(r"^-{30,}[ \t]*(?P<stamp>.*)$", re.MULTILINE)
_ENTRY_HEADERS: Final[tuple[tuple[re.Pattern[str], Direction], ...]] = (
    (re.compile(r"^(?P<transport>\w+) message received \[\d+\] bytes :$"), "received"),
    (re.compile(r"^(?P<transport>\w+) message sent \(\d+ bytes\):$"), "sent"),
    (re.compile(r"^Unexpected (?P<transport>\w+) message received:$"), "unexpected"),
)


def _parse_stamp(stamp: str) -> datetime | None:
    parts = stamp.split()
    if len(parts) >= 2:
        with contextlib.suppress(ValueError):
            return datetime.strptime(f"{parts[0]} {parts[1]}", "%Y-%m-%d %H:%M:%S.%f")
    return None


def _entry_kind(line: str) -> tuple[Direction, str] | None:
    for pattern, direction in _ENTRY_HEADERS:
        found = pattern.match(line)
        if found:
            return direction, found.group("transport")
    return None


def parse_message_log(text: str) -> list[SippMessage]:
    """Parse SIPp's ``-trace_msg`` log into messages, in log order. Entries SIPp adds
    for unexpected messages come back with ``direction="unexpected"`` (the same
    message is also logged as received); other notes (ignored/lost) are skipped."""
    messages: list[SippMessage] = []
    matches = list(_SEPARATOR.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        chunk = text[match.end() :][: end - match.end()].lstrip("\n")
        header_line, _, rest = chunk.partition("\n")
        kind = _entry_kind(header_line.strip())
        if kind is None:
            continue
        direction, transport = kind
        body = rest.lstrip("\n")
        while body.endswith("\n") and not body.endswith("\r\n"):
            body = body[:-1]
        if not body.strip():
            continue
        stamp = _parse_stamp(match.group("stamp")) if match.group("stamp") else None
        messages.append(SippMessage.parse(direction, transport, body, stamp))
    return messages


# -------------------------------------------------------------------------- result


def _read(path: Path | None) -> str:
    """A log file's text with its line ends untouched (SIP messages keep their CRLF)."""
    if path is None or not path.is_file():
        return ""
    return path.read_bytes().decode("utf-8", errors="replace")


def _last_csv_row(text: str) -> dict[str, str]:
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    return {key: value for key, value in zip(rows[0], rows[-1], strict=False) if key}


def _exit_meaning(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return _EXIT_CODES.get(returncode, "unknown")


def _tail(text: str, limit: int = 4000) -> str:
    text = text.rstrip()
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} chars cut ...]\n{text[-limit:]}"


@dataclass
class SippResult:
    """The outcome of one SIPp run."""

    command: list[str]
    returncode: int | None
    expected_calls: int
    workdir: Path
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    #: Every message SIPp sent or received, in order (-trace_msg).
    messages: list[SippMessage] = field(default_factory=list)
    #: Messages SIPp did not expect where they arrived (also in ``messages``).
    unexpected: list[SippMessage] = field(default_factory=list)
    #: Final row of -trace_counts: "<index>_<name>_<Sent|Recv|Retrans|Timeout|Unexp|...>".
    counts: dict[str, int] = field(default_factory=dict)
    #: Final row of -trace_stat: "SuccessfulCall(C)", "FailedCall(C)", "Failed...(C)", ...
    stats: dict[str, str] = field(default_factory=dict)
    #: -trace_err: warnings, unexpected messages, receive timeouts.
    error_log: str = ""
    #: -trace_screen: SIPp's final scenario and statistics screens.
    screen: str = ""
    #: -trace_logs: output of <log> actions.
    action_log: str = ""
    #: -trace_calldebug: the history of aborted calls.
    calldebug: str = ""

    # -- calls -------------------------------------------------------------------

    def _screen_counter(self, label: str) -> int | None:
        found = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", self.screen)
        return int(found[-1]) if found else None

    def _stat(self, key: str, screen_label: str) -> int | None:
        value = self.stats.get(key, "").strip()
        if value.isdigit():
            return int(value)
        return self._screen_counter(screen_label)

    @property
    def successful_calls(self) -> int | None:
        """Cumulative successful calls, or None if SIPp left no statistics."""
        return self._stat("SuccessfulCall(C)", "Successful call")

    @property
    def failed_calls(self) -> int | None:
        return self._stat("FailedCall(C)", "Failed call")

    @property
    def failure_reasons(self) -> dict[str, int]:
        """Non-zero cumulative ``Failed*`` counters, e.g. {"FailedUnexpectedMsg": 1}."""
        reasons: dict[str, int] = {}
        for key, value in self.stats.items():
            if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
                if value.strip().isdigit() and int(value) > 0:
                    reasons[key[:-3]] = int(value)
        return reasons

    @property
    def ok(self) -> bool:
        return self.problems() == []

    def problems(self, calls: int | None = None) -> list[str]:
        """Why the run does not count as a success (empty when it does)."""
        expected = self.expected_calls if calls is None else calls
        found: list[str] = []
        if self.timed_out:
            found.append("SIPp did not finish in time and was stopped")
        if self.returncode != 0:
            found.append(f"exit code {self.returncode} ({_exit_meaning(self.returncode)})")
        successful = self.successful_calls
        if successful is None:
            found.append("SIPp left no call statistics")
        elif successful != expected:
            found.append(f"{successful} successful call(s), expected {expected}")
        failed = self.failed_calls
        if failed:
            reasons = ", ".join(f"{k}={v}" for k, v in self.failure_reasons.items())
            found.append(f"{failed} failed call(s) ({reasons or 'no reason recorded'})")
        return found

    def assert_ok(self, calls: int | None = None) -> None:
        """Raise AssertionError with SIPp's logs unless SIPp exited 0 with exactly
        ``calls`` (default: the ``-m`` count) successful and no failed calls."""
        found = self.problems(calls)
        if found:
            raise AssertionError("SIPp run failed: " + "; ".join(found) + "\n" + self.describe())

    # -- messages ------------------------------------------------------------------

    def received(self, what: str | int | None = None) -> list[SippMessage]:
        """Messages SIPp received (i.e. that the party under test sent), optionally
        only requests of a method (``"INVITE"``) or responses with a code (``200``).
        UDP retransmissions appear once per copy."""
        return [m for m in self.messages if m.direction == "received" and m.matches(what)]

    def sent(self, what: str | int | None = None) -> list[SippMessage]:
        """Messages SIPp sent, filtered like :meth:`received`."""
        return [m for m in self.messages if m.direction == "sent" and m.matches(what)]

    def count(self, name: str | int, kind: str = "Recv") -> int:
        """Sum of the -trace_counts column(s) for scenario steps named ``name``
        (``"INVITE"``, ``"200"``, ``"Pause"``) and ``kind`` (``Recv``, ``Sent``,
        ``Retrans``, ``Timeout``, ``Unexp``)."""
        pattern = re.compile(rf"^\d+_{re.escape(str(name))}_{re.escape(kind)}$")
        return sum(value for key, value in self.counts.items() if pattern.match(key))

    def flow(self) -> str:
        """One line per message: direction and start line."""
        arrows = {"received": "-->", "sent": "<--", "unexpected": "!!!"}
        return "\n".join(f"{arrows[m.direction]} {m.start_line}" for m in self.messages)

    def describe(self) -> str:
        """Everything useful to understand a failed run."""
        stats = {
            key: value
            for key, value in self.stats.items()
            if key.endswith("(C)") and value.strip() not in ("", "0") and "Time" not in key
        }
        last_messages = "\n".join(
            f"--- {m.direction} ({m.transport}) ---\n{m.text.rstrip()}" for m in self.messages[-6:]
        )
        parts = [
            f"command: {shlex.join(self.command)}",
            f"workdir: {self.workdir}",
            f"exit code: {self.returncode}, timed out: {self.timed_out}",
            f"statistics: {stats}",
            f"message flow (SIPp's view: --> received, <-- sent):\n{self.flow() or '(none)'}",
            f"stderr:\n{_tail(self.stderr, 2000)}",
            f"error log:\n{_tail(self.error_log)}",
            f"call debug:\n{_tail(self.calldebug, 3000)}",
            f"final screen:\n{_tail(self.screen, 3000)}",
            f"last messages:\n{_tail(last_messages, 6000)}",
        ]
        return "\n\n".join(parts)


# ------------------------------------------------------------------------- process


class _SippProcess:
    """What SippServer and SippClient share: command line, process, result."""

    role: ClassVar[str] = "sipp"

    def __init__(
        self,
        scenario: str | os.PathLike[str],
        tmp_path: Path,
        *,
        transport: Transport = "udp",
        port: int | None = None,
        calls: int = 1,
        values: Mapping[str, object] | None = None,
        keys: Mapping[str, object] | None = None,
        auth: tuple[str, str] = DEFAULT_AUTH,
        duration_ms: int | None = 200,
        recv_timeout_ms: int | None = None,
        auto_answer: bool = False,
        trace_msg: bool = True,
        max_runtime: float = 300.0,
        extra_args: Sequence[str] = (),
        local_ip: str = LOOPBACK,
    ) -> None:
        if transport not in _TRANSPORT_FLAG:
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        if calls < 1:
            raise ValueError("calls must be at least 1")
        self.transport: Transport = transport
        self.calls = calls
        self.local_ip = local_ip
        self._fixed_port = port
        self._port = port
        self._keys = dict(keys or {})
        self._auth = auth
        self._duration_ms = duration_ms
        self._recv_timeout_ms = recv_timeout_ms
        self._auto_answer = auto_answer
        self._trace_msg = trace_msg
        self._max_runtime = max_runtime
        self._extra_args = list(extra_args)
        source = find_scenario(scenario)
        self.workdir = self._make_workdir(tmp_path, _scenario_stem(source))
        self.scenario_path = render_scenario(source, self.workdir, **dict(values or {}))
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self.command: list[str] = []
        self.result: SippResult | None = None

    def _make_workdir(self, tmp_path: Path, stem: str) -> Path:
        tmp_path.mkdir(parents=True, exist_ok=True)
        for index in range(1, 1000):
            suffix = "" if index == 1 else f"-{index}"
            workdir = tmp_path / f"sipp-{self.role}-{stem}{suffix}"
            try:
                workdir.mkdir()
            except FileExistsError:
                continue
            return workdir
        raise SippError(f"cannot create a working directory under {tmp_path}")

    # -- properties -------------------------------------------------------------

    @property
    def port(self) -> int:
        """SIPp's own SIP port (-p)."""
        if self._port is None:
            raise SippError("the port is chosen when SIPp starts")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.local_ip, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    # -- command line -------------------------------------------------------------

    def _target_args(self) -> list[str]:
        return []

    def _role_args(self) -> list[str]:
        return []

    def _build_command(self) -> list[str]:
        work = self.workdir
        user, password = self._auth
        cmd = [SIPP_BIN, *self._target_args()]
        cmd += ["-sf", str(self.scenario_path)]
        cmd += ["-i", self.local_ip, "-p", str(self.port), "-bind_local"]
        cmd += ["-t", _TRANSPORT_FLAG[self.transport], "-m", str(self.calls)]
        cmd += ["-nostdin"]
        if self._trace_msg:
            cmd += ["-trace_msg", "-message_file", str(work / "messages.log")]
        cmd += ["-trace_err", "-error_file", str(work / "errors.log")]
        cmd += ["-trace_stat", "-stf", str(work / "stats.csv")]
        cmd += ["-trace_counts"]
        cmd += ["-trace_screen", "-screen_file", str(work / "screen.log")]
        cmd += ["-trace_logs", "-log_file", str(work / "actions.log")]
        cmd += ["-trace_calldebug", "-calldebug_file", str(work / "calldebug.log")]
        cmd += ["-timeout", f"{self._max_runtime:g}s", "-timeout_error"]
        cmd += ["-au", user, "-ap", password]
        keys: dict[str, object] = {"auth_user": user, "auth_password": password}
        keys.update(self._keys)
        for key, value in keys.items():
            cmd += ["-key", key, str(value)]
        if self._duration_ms is not None:
            cmd += ["-d", str(self._duration_ms)]
        if self._recv_timeout_ms is not None:
            cmd += ["-recv_timeout", str(self._recv_timeout_ms)]
        if self._auto_answer:
            cmd += ["-aa"]
        cmd += self._role_args()
        cmd += self._extra_args
        return cmd

    # -- lifecycle ----------------------------------------------------------------

    async def _spawn(self) -> asyncio.subprocess.Process:
        if self._port is None:
            self._port = free_port("both", self.local_ip)
        self.command = self._build_command()
        (self.workdir / "command.txt").write_text(shlex.join(self.command) + "\n")
        with (
            open(self.workdir / "stdout.txt", "wb") as stdout,
            open(self.workdir / "stderr.txt", "wb") as stderr,
        ):
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.workdir,
            )
        self._started_at = time.monotonic()
        return proc

    async def start(self) -> Self:
        """Start SIPp (entering the async context manager does this)."""
        if self._proc is not None:
            raise SippError("this SIPp was already started")
        self._proc = await self._spawn()
        return self

    async def wait(self, timeout: float = 30.0) -> SippResult:
        """Wait for SIPp to finish its ``calls`` calls and return the result.

        After ``timeout`` seconds SIPp is stopped and the result has ``timed_out``
        set (assert_ok() then fails with everything SIPp logged so far)."""
        proc = self._require_proc()
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            await self._terminate()
        return self._collect(timed_out)

    async def stop(self) -> SippResult:
        """Stop SIPp now (SIGTERM, then SIGKILL) and return what it did so far."""
        self._require_proc()
        was_running = self.running
        await self._terminate()
        return self._collect(timed_out=was_running)

    async def run(self, timeout: float = 30.0) -> SippResult:
        """Start, wait and clean up: ``result = await SippClient(...).run()``."""
        async with self:
            return await self.wait(timeout)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._terminate()

    def _require_proc(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise SippError("SIPp was not started (use 'async with' or 'await start()')")
        return self._proc

    async def _terminate(self, grace: float = 3.0) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                # SIPp handles SIGTERM: it writes its final screen/statistics and exits.
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise

    def _collect(self, timed_out: bool) -> SippResult:
        proc = self._require_proc()
        work = self.workdir
        counts_files = sorted(work.glob(f"*_{proc.pid}_counts.csv")) or sorted(
            work.glob("*_counts.csv")
        )
        counts: dict[str, int] = {}
        for key, value in _last_csv_row(_read(counts_files[-1] if counts_files else None)).items():
            if value.strip().lstrip("-").isdigit():
                counts[key] = int(value)
        messages = parse_message_log(_read(work / "messages.log"))
        self.result = SippResult(
            command=list(self.command),
            returncode=proc.returncode,
            expected_calls=self.calls,
            workdir=work,
            timed_out=timed_out,
            stdout=_read(work / "stdout.txt"),
            stderr=_read(work / "stderr.txt"),
            messages=[m for m in messages if m.direction != "unexpected"],
            unexpected=[m for m in messages if m.direction == "unexpected"],
            counts=counts,
            stats=_last_csv_row(_read(work / "stats.csv")),
            error_log=_read(work / "errors.log"),
            screen=_read(work / "screen.log"),
            action_log=_read(work / "actions.log"),
            calldebug=_read(work / "calldebug.log"),
        )
        return self.result


class SippServer(_SippProcess):
    """SIPp running a UAS scenario: it waits for our UA's requests on ``port``.

    ``async with SippServer(...) as sipp`` returns once SIPp's UDP socket is bound
    (``transport="udp"``, ``-t u1``) or its TCP socket is listening
    (``transport="tcp"``, ``-t t1``); leaving the block stops SIPp if it still runs.
    ``await sipp.wait(timeout)`` waits for ``calls`` calls to end.

    Parameters (shared with SippClient):
      scenario: name in tests/sipp_scenarios (``"uas_answer"``, ``"uas_final"``) or a path;
        templates are rendered with ``values``.
      tmp_path: pytest's tmp_path; SIPp works in ``tmp_path/sipp-server-<scenario>``.
      port: SIPp's port; default a :func:`free_port`, re-picked if SIPp cannot bind it.
      calls: ``-m``, the calls to complete before SIPp exits (and the count assert_ok expects).
      keys: extra ``-key name value`` keywords usable as ``[name]`` in scenarios.
      auth: (user, password) as -au/-ap and as keywords [auth_user]/[auth_password].
      duration_ms: ``-d``, the length of argument-less ``<pause/>`` (call duration before
        SIPp hangs up in uas_answer_then_bye / uac_call_sipp_hangs_up); None: SIPp's 0.
      recv_timeout_ms: ``-recv_timeout``, fails calls that wait longer for a message.
      auto_answer: ``-aa``, SIPp answers in-dialog INFO/NOTIFY/OPTIONS/UPDATE with 200.
      trace_msg: log every message (turn off for load tests).
      max_runtime: ``-timeout ... -timeout_error``: SIPp exits by itself after that long,
        a safety net should the test process die.
      extra_args: anything else for the command line.
    """

    role = "server"

    def __init__(
        self,
        scenario: str | os.PathLike[str],
        tmp_path: Path,
        *,
        transport: Transport = "udp",
        port: int | None = None,
        calls: int = 1,
        values: Mapping[str, object] | None = None,
        keys: Mapping[str, object] | None = None,
        auth: tuple[str, str] = DEFAULT_AUTH,
        duration_ms: int | None = 200,
        recv_timeout_ms: int | None = None,
        auto_answer: bool = False,
        trace_msg: bool = True,
        max_runtime: float = 300.0,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        local_ip: str = LOOPBACK,
    ) -> None:
        super().__init__(
            scenario,
            tmp_path,
            transport=transport,
            port=port,
            calls=calls,
            values=values,
            keys=keys,
            auth=auth,
            duration_ms=duration_ms,
            recv_timeout_ms=recv_timeout_ms,
            auto_answer=auto_answer,
            trace_msg=trace_msg,
            max_runtime=max_runtime,
            extra_args=extra_args,
            local_ip=local_ip,
        )
        self.startup_timeout = startup_timeout

    def uri(self, user: str = "service") -> str:
        """A SIP URI that reaches this SIPp (``;transport=tcp`` over TCP)."""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}@{self.local_ip}:{self.port}{suffix}"

    async def start(self) -> Self:
        if self._proc is not None:
            raise SippError("this SIPp was already started")
        attempts = 1 if self._fixed_port is not None else 4
        for attempt in range(1, attempts + 1):
            self._proc = await self._spawn()
            try:
                await self._wait_bound(self._proc)
                return self
            except SippStartupError:
                bind_failed = self._proc.returncode == 254
                if attempt < attempts and bind_failed:
                    self._port = None  # someone took the port meanwhile: pick another
                    continue
                raise
        raise AssertionError("unreachable")

    async def _wait_bound(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.005
        while True:
            if proc.returncode is not None:
                result = self._collect(timed_out=False)
                raise SippStartupError(
                    f"SIPp exited with {proc.returncode} while starting\n{result.describe()}"
                )
            bound = _proc_net_bound(proc.pid, self.port, self.transport)
            if bound is None:
                bound = _probe_bound(self.local_ip, self.port, self.transport)
            if bound:
                return
            if time.monotonic() > deadline:
                await self._terminate()
                result = self._collect(timed_out=True)
                raise SippStartupError(
                    f"SIPp did not bind {self.transport.upper()} {self.local_ip}:{self.port} "
                    f"within {self.startup_timeout:g}s\n{result.describe()}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


class SippClient(_SippProcess):
    """SIPp running a UAC scenario against our UA at ``remote``.

    ``remote`` is our UA's port on loopback, or ``(host, port)``, or ``"host:port"``.
    ``service`` is the user part of the Request-URI (``-s``), ``rate`` the calls per
    ``rate_period_ms`` (``-r``/``-rp``; default 100 per second: at SIPp's own default
    of 10 the first call only starts after 100 ms; None leaves SIPp's default),
    ``limit`` the maximum simultaneous calls (``-l``). SIPp binds ``port`` (default:
    a free port) and, over TCP, also listens on it, so our UA can open a new
    connection for in-dialog requests.
    The other parameters are SippServer's. ``result = await SippClient(...).run()``
    runs it to the end; or ``async with`` it and ``await client.wait()``.
    """

    role = "client"

    def __init__(
        self,
        scenario: str | os.PathLike[str],
        tmp_path: Path,
        remote: int | tuple[str, int] | str,
        *,
        transport: Transport = "udp",
        service: str = "service",
        calls: int = 1,
        rate: float | None = 100.0,
        rate_period_ms: int | None = None,
        limit: int | None = None,
        port: int | None = None,
        values: Mapping[str, object] | None = None,
        keys: Mapping[str, object] | None = None,
        auth: tuple[str, str] = DEFAULT_AUTH,
        duration_ms: int | None = 200,
        recv_timeout_ms: int | None = None,
        auto_answer: bool = False,
        trace_msg: bool = True,
        max_runtime: float = 300.0,
        extra_args: Sequence[str] = (),
        local_ip: str = LOOPBACK,
    ) -> None:
        super().__init__(
            scenario,
            tmp_path,
            transport=transport,
            port=port,
            calls=calls,
            values=values,
            keys=keys,
            auth=auth,
            duration_ms=duration_ms,
            recv_timeout_ms=recv_timeout_ms,
            auto_answer=auto_answer,
            trace_msg=trace_msg,
            max_runtime=max_runtime,
            extra_args=extra_args,
            local_ip=local_ip,
        )
        if isinstance(remote, int):
            self.remote = f"{LOOPBACK}:{remote}"
        elif isinstance(remote, tuple):
            self.remote = f"{remote[0]}:{remote[1]}"
        else:
            self.remote = remote
        self.service = service
        self.rate = rate
        self.rate_period_ms = rate_period_ms
        self.limit = limit

    def _target_args(self) -> list[str]:
        return [self.remote]

    def _role_args(self) -> list[str]:
        args = ["-s", self.service]
        if self.rate is not None:
            args += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            args += ["-rp", str(self.rate_period_ms)]
        if self.limit is not None:
            args += ["-l", str(self.limit)]
        return args


def iter_scenarios() -> Iterator[Path]:
    """All scenario files and templates in :data:`SCENARIO_DIR`."""
    yield from sorted(p for p in SCENARIO_DIR.iterdir() if p.name.endswith((".xml", ".xml.tmpl")))
