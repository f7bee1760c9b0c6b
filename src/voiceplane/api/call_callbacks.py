"""A call's callbacks as the API shows them: each one, and every attempt at delivering it.

Built from the outbox's reports (:func:`voiceplane.store.outbox.attempts_for`); times are
ISO 8601 UTC like the call record's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from voiceplane.store.outbox import CallbackReport
from voiceplane.store.repository import iso_utc


class CallbackAttempt(BaseModel):
    at: str = Field(description="When the request was sent.")
    http_status: int | None = Field(
        description="The receiver's HTTP status; null when no response came (refused, "
        "timed out)."
    )
    error: str | None = Field(description="Why the attempt failed; null when it succeeded.")
    duration_ms: int = Field(description="From sending the request to its end, in ms.")


class CallbackRecord(BaseModel):
    """One callback of a call: what was sent where, and how delivering it went."""

    id: str = Field(description="The webhook-id: the same on every attempt.")
    kind: Literal["status", "progress"] = Field(
        description="status: the final record, to the call's callback URL; progress: one "
        "event, to its dlrurl."
    )
    event: str = Field(description="initiated, ringing, answered or completed.")
    sequence: int = Field(description="The order of the call's callbacks, from 1.")
    url: str
    method: Literal["GET", "POST"] = Field(
        description="GET for a URL with {placeholders}, POST (signed JSON) otherwise."
    )
    created_at: str
    next_attempt_at: str | None = Field(
        description="When the next attempt is due; null once delivered or given up."
    )
    delivered_at: str | None = Field(description="When a 2xx answer came.")
    given_up_at: str | None = Field(description="When retrying stopped (its period ended).")
    last_error: str | None = Field(description="Why the last failed attempt failed.")
    attempts: list[CallbackAttempt] = Field(description="Every attempt, oldest first.")


class CallCallbacks(BaseModel):
    """``GET /v1/{sid}/voice/calls/{id}/callbacks``."""

    call_id: str
    callbacks: list[CallbackRecord] = Field(description="In the order they were written.")


def callback_record(report: CallbackReport) -> CallbackRecord:
    message = report.message
    finished = report.delivered_at is not None or report.given_up_at is not None
    return CallbackRecord.model_validate(
        {
            "id": message.id,
            "kind": message.kind,
            "event": message.event,
            "sequence": message.seq,
            "url": message.url,
            "method": message.method,
            "created_at": iso_utc(message.created_at),
            "next_attempt_at": None if finished else iso_utc(report.next_attempt_at),
            "delivered_at": iso_utc(report.delivered_at),
            "given_up_at": iso_utc(report.given_up_at),
            "last_error": report.last_error,
            "attempts": [
                {
                    "at": iso_utc(attempt.at),
                    "http_status": attempt.http_status,
                    "error": attempt.error,
                    "duration_ms": attempt.duration_ms,
                }
                for attempt in report.attempts
            ],
        }
    )
