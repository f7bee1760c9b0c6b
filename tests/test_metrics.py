"""``GET /metrics`` on the running platform, read with prometheus-client's own parser."""

from __future__ import annotations

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
