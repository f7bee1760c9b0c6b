"""``GET /metrics`` on the running platform, read with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.platform import running_platform
from tests.support.sipp import SippServer, requires_sipp

pytestmark = [requires_sipp]

BUSY = "+919876500486"
RINGS = "+919876500000"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_calls_by_status_and_those_in_progress(tmp_path: Path) -> None:
    async with SippServer("operator_by_number", tmp_path, calls=3, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            for _ in range(2):
                await running.wait_for(await running.outbound(to=BUSY, target="hi"))
            ringing = await running.outbound(to=RINGS, target="hi", timeout=30)
            await running.wait_for(ringing, state="ringing")
            response = await running.client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            found = samples(response.text)
            await running.cancel(ringing)
            await running.wait_for(ringing)
    busy = (("service", "outbound"), ("state", "completed"), ("status", "BUSY"))
    assert found[("voiceplane_calls", busy)] == 2
    ringing_now = (("service", "outbound"), ("state", "ringing"), ("status", ""))
    assert found[("voiceplane_calls", ringing_now)] == 1
    assert found[("voiceplane_calls_in_progress", ())] == 1
    assert found[("voiceplane_callbacks_pending", ())] == 0
    assert found[("voiceplane_callbacks_total", (("outcome", "delivered"),))] == 0


async def test_metrics_show_delivered_callbacks_and_their_latency(tmp_path: Path) -> None:
    from tests.callbacks.receiver import Receiver

    receiver = Receiver()
    await receiver.start()
    try:
        async with SippServer("operator_by_number", tmp_path, calls=2, duration_ms=None) as sipp:
            host, port = sipp.address
            async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
                for _ in range(2):
                    await running.wait_for(
                        await running.outbound(to=BUSY, callback=receiver.url("/status"))
                    )
                await receiver.wait_for(2)
                for _ in range(100):  # the 2xx is recorded just after the receiver answered
                    found = samples((await running.client.get("/metrics")).text)
                    if found[("voiceplane_callbacks_total", (("outcome", "delivered"),))] == 2:
                        break
                    await asyncio.sleep(0.02)
    finally:
        await receiver.stop()
    assert found[("voiceplane_callbacks_total", (("outcome", "delivered"),))] == 2
    assert found[("voiceplane_callback_latency_seconds_count", ())] == 2
    assert found[("voiceplane_callback_latency_seconds_bucket", (("le", "+Inf"),))] == 2
    assert 0 < found[("voiceplane_callback_latency_seconds_sum", ())] < 10
    assert found[("voiceplane_callbacks_pending", ())] == 0
