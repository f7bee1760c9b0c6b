"""The tables: accounts and their API keys, numbers, calls and their legs.

Typed SQLAlchemy 2 declarative models. The same models run on SQLite (the embedded default)
and PostgreSQL: no dialect-specific types, every timestamp is a timezone-aware UTC
``datetime`` (:class:`UTCDateTime`), and every constraint and index has a fixed name so
the Alembic migrations in ``migrations/versions`` match the models on both databases
(``tests/store/test_db.py`` checks that they do).

Status words (``Call.status``, ``Leg.status``) are plain text here: the store keeps whatever
the calls layer gives it and never spells one (DESIGN.md, Layers). The other small
vocabularies (a number's kind, a call's service and state) are part of the contract and are
enforced by CHECK constraints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NUMBER_KINDS: Final = ("did", "bridge")
FLOW_STATES: Final = ("draft", "published", "paused")
SERVICES: Final = ("outbound", "click2call", "incoming")
STATES: Final = ("queued", "dialing", "ringing", "answered", "completed")
DEFAULT_STATUS_DIALECT: Final = "voiceplane"

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as a timezone-aware UTC ``datetime``.

    PostgreSQL stores it as ``timestamp with time zone``. SQLite has no such type, so the
    value is stored as naive UTC text and given its UTC zone back when read. A naive
    ``datetime`` is refused: its zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:  # the usual case skips this: every timestamp here is UTC
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"naive datetime {value.isoformat()} given; use a UTC-aware one")
            value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - the drivers give datetimes
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    """``column IN ('a', 'b')`` for a CHECK constraint (plain SQL that every database reads)."""
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


# An integer primary key that is 64-bit on PostgreSQL and SQLite's rowid alias on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Account(Base):
    """A customer of the platform: its public SID is the first part of every API path."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    # Which status words the account's records and callbacks use.
    status_dialect: Mapped[str] = mapped_column(Text, default=DEFAULT_STATUS_DIALECT)
    # Capacity (voiceplane.policy): channels at once, new calls a second; None: unlimited.
    channels: Mapped[int | None]
    max_cps: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="ApiKey.id"
    )
    numbers: Mapped[list[Number]] = relationship(back_populates="account", order_by="Number.e164")

    def __repr__(self) -> str:
        return f"Account(id={self.id!r}, sid={self.sid!r}, name={self.name!r})"


class ApiKey(Base):
    """One API key of an account: only its SHA-256 is kept, and a short prefix for display."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex digest
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship(back_populates="api_keys")

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, account_id={self.account_id!r}, prefix={self.prefix!r})"


class Number(Base):
    """A telephone number of an account: a DID (incoming) or a bridge (caller ID for calls)."""

    __tablename__ = "numbers"
    __table_args__ = (
        CheckConstraint(_in("kind", NUMBER_KINDS), name="kind"),
        CheckConstraint("channels >= 0", name="channels"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    e164: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    channels: Mapped[int] = mapped_column(default=10)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Incoming-call routing (docs/flows.md): the flow a call to this number runs, the office
    # hours (schedule JSON, with an optional off-hour prompt) and, for a missed-call number,
    # how many seconds it rings before it is refused on purpose.
    flow_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("flows.id", ondelete="SET NULL"), index=True
    )
    hours: Mapped[str | None] = mapped_column(Text)
    missed_call: Mapped[int | None]
    # Where an incoming call to this number is reported (its record, like any call's).
    callback_url: Mapped[str | None] = mapped_column(Text)

    account: Mapped[Account] = relationship(back_populates="numbers")

    def __repr__(self) -> str:
        return f"Number(id={self.id!r}, e164={self.e164!r}, kind={self.kind!r})"


class Call(Base):
    """One call as users see it: the public record of DESIGN.md, Contract, plus the command.

    ``id`` is the public call id. Times are UTC; ``start_time``, ``answer_time`` and
    ``end_time`` are the call's as a whole, each leg keeps its own.
    """

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(_in("service", SERVICES), name="service"),
        CheckConstraint(_in("state", STATES), name="state"),
        Index("ix_calls_account_id_created_at", "account_id", "created_at"),
        Index("ix_calls_state", "state"),
        Index("ix_calls_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    service: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, default="queued")
    status: Mapped[str | None] = mapped_column(Text)
    from_number: Mapped[str | None] = mapped_column(Text)
    to_number: Mapped[str | None] = mapped_column(Text)
    bridge: Mapped[str | None] = mapped_column(Text)
    custom: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    dlr_url: Mapped[str | None] = mapped_column(Text)
    ring_timeout: Mapped[int | None]  # seconds
    scheduled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    start_time: Mapped[datetime | None]
    answer_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    duration: Mapped[int] = mapped_column(default=0)  # seconds, start to end
    billsec: Mapped[int] = mapped_column(default=0)  # seconds, answer to end
    # For a status decided before any SIP was sent: the pre-dial rule that decided it.
    decided_by_rule: Mapped[str | None] = mapped_column(Text)
    # An incoming call's flow: the keys the caller pressed ("1,2") and its voicemail's file.
    keypress: Mapped[str | None] = mapped_column(Text)
    recording: Mapped[str | None] = mapped_column(Text)
    # Promotional (checked against the DND registry) or not; None: the account's default.
    promotional: Mapped[bool | None] = mapped_column(Boolean)
    # The command, kept so that the engine can carry it out after a restart.
    target: Mapped[str | None] = mapped_column(Text)  # TTS text or an audio file to play
    retry: Mapped[int] = mapped_column(default=0, server_default="0")  # extra attempts allowed
    retry_interval: Mapped[int] = mapped_column(default=60, server_default="60")  # seconds
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")  # attempts started
    cancel_requested_at: Mapped[datetime | None]
    # Seconds the call may wait for a free channel before it ends MAX-USE; None: the default.
    queue_timeout: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship()
    legs: Mapped[list[Leg]] = relationship(
        back_populates="call",
        cascade="all, delete-orphan",
        order_by="Leg.seq",
        lazy="selectin",
    )

    def __repr__(self) -> str:
        return (
            f"Call(id={self.id!r}, service={self.service!r}, state={self.state!r}, "
            f"status={self.status!r})"
        )


class Leg(Base):
    """One SIP leg of a call (click-to-call has two: the agent, then the customer).

    A leg number can be tried more than once (parallel ringing, retries): each try is a row,
    and ``seq`` orders the rows of one call.
    """

    __tablename__ = "legs"
    __table_args__ = (
        UniqueConstraint("call_id", "seq"),
        Index("ix_legs_sip_call_id", "sip_call_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), ForeignKey("calls.id", ondelete="CASCADE"))
    leg: Mapped[int]  # 1 = the first party dialled, 2 = the second
    seq: Mapped[int] = mapped_column(default=0, server_default="0")  # order within the call
    number: Mapped[str] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    sip_code: Mapped[int | None]
    sip_reason: Mapped[str | None] = mapped_column(Text)
    q850_cause: Mapped[int | None]
    hangup_by: Mapped[str | None] = mapped_column(Text)
    start_time: Mapped[datetime | None]
    ring_time: Mapped[datetime | None]
    answer_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    sip_call_id: Mapped[str | None] = mapped_column(Text)

    call: Mapped[Call] = relationship(back_populates="legs")

    def __repr__(self) -> str:
        return f"Leg(call_id={self.call_id!r}, leg={self.leg!r}, status={self.status!r})"


# --- callbacks (issue 4) ---------------------------------------------------------------------

# ``status``: the final callback of a call (its ``callback`` URL); ``progress``: one event of
# its ``dlrurl`` (initiated, ringing, answered, completed).
OUTBOX_KINDS: Final = ("status", "progress")
OUTBOX_METHODS: Final = ("GET", "POST")
# The rows the dispatcher may still have to send; the partial "due" index covers only them.
OUTBOX_PENDING: Final = "delivered_at IS NULL AND given_up_at IS NULL"


class WebhookSecret(Base):
    """A secret an account's callbacks are signed with (Standard Webhooks, ``whsec_...``).

    Rotating adds a new row and sets ``retired_at`` on the current one. The newest secret
    always signs; a retired one keeps signing too (a second signature in the header) until
    its grace period after ``retired_at`` ends, so receivers can switch at their own pace.
    """

    __tablename__ = "webhook_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"WebhookSecret(id={self.id!r}, account_id={self.account_id!r})"


class Outbox(Base):
    """One callback to deliver, written in the transaction of the change it reports.

    ``id`` is the ``webhook-id`` (the same on every attempt, so receivers can drop
    duplicates); ``seq`` numbers the callbacks of one call in the order they were written.
    ``next_attempt_at`` is when the dispatcher may send it next (it also serves as the lease
    of a row being sent). A row is finished once ``delivered_at`` or ``given_up_at`` is set.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in("kind", OUTBOX_KINDS), name="kind"),
        CheckConstraint(_in("method", OUTBOX_METHODS), name="method"),
        UniqueConstraint("call_id", "seq"),
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            sqlite_where=text(OUTBOX_PENDING),
            postgresql_where=text(OUTBOX_PENDING),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    call_id: Mapped[str] = mapped_column(String(64), ForeignKey("calls.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    seq: Mapped[int]
    url: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)  # JSON text for POST
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    delivered_at: Mapped[datetime | None]
    given_up_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"Outbox(id={self.id!r}, call_id={self.call_id!r}, seq={self.seq!r})"


class OutboxAttempt(Base):
    """One try at delivering an outbox row: when, the HTTP status (None: no response), why."""

    __tablename__ = "outbox_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    outbox_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("outbox.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    http_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int]

    def __repr__(self) -> str:
        return f"OutboxAttempt(outbox_id={self.outbox_id!r}, http_status={self.http_status!r})"


# --- pre-dial policy (issue 5) ---------------------------------------------------------------


class Blocklisted(Base):
    """A number on an account's blocklist (E.164): its incoming calls are refused, and its
    outgoing ones too when the account's policy says ``block_outgoing``."""

    __tablename__ = "blocklist"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    e164: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Blocklisted(account_id={self.account_id!r}, e164={self.e164!r})"


class _DialingColumns:
    """Dialing permissions (voiceplane.policy.permissions): a NULL list means any."""

    countries: Mapped[list[str] | None] = mapped_column(JSON)  # ISO 3166 regions
    international: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )
    number_types: Mapped[list[str] | None] = mapped_column(JSON)  # phonenumbers types
    networks: Mapped[list[str] | None] = mapped_column(JSON)  # carrier names allowed
    blocked_networks: Mapped[list[str] | None] = mapped_column(JSON)  # carrier names refused
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccountPolicy(_DialingColumns, Base):
    """An account's pre-dial settings; an account without a row has the defaults."""

    __tablename__ = "account_policies"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    promotional: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    block_outgoing: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    dnd_category: Mapped[int | None]  # TRAI preference category 1-8 of its promotions


class NumberPolicy(_DialingColumns, Base):
    """A bridge number's dialing permissions, applied on top of its account's."""

    __tablename__ = "number_policies"

    number_id: Mapped[int] = mapped_column(
        ForeignKey("numbers.id", ondelete="CASCADE"), primary_key=True
    )


# --- IVR flows (issue 6) ---------------------------------------------------------------------


class Flow(Base):
    """An account's IVR flow: its versions, and which one runs (``live_version``).

    ``state``: ``draft`` until a version is published, then ``published``; ``paused`` stops
    it running (``live_version`` is kept, publishing again resumes). The documents are in
    :class:`FlowVersion`; the store keeps them as JSON text and never reads them.
    """

    __tablename__ = "flows"
    __table_args__ = (
        CheckConstraint(_in("state", FLOW_STATES), name="state"),
        Index("ix_flows_account_id_created_at", "account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, default="draft")
    latest_version: Mapped[int] = mapped_column(default=1)
    live_version: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Flow(id={self.id!r}, state={self.state!r}, live={self.live_version!r})"


class FlowVersion(Base):
    """One saved version of a flow: the document exactly as it was saved (JSON text)."""

    __tablename__ = "flow_versions"
    __table_args__ = (UniqueConstraint("flow_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64), ForeignKey("flows.id", ondelete="CASCADE"))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"FlowVersion(flow_id={self.flow_id!r}, version={self.version!r})"
