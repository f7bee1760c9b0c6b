"""``[media] backend`` chooses the media backend; the rtpengine keys and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiceplane.config import ConfigError, load_config
from voiceplane.media.embedded import EmbeddedMedia
from voiceplane.media.rtpengine import RtpengineMedia
from voiceplane.services import build_platform


def test_defaults() -> None:
    media = load_config(None, {}).media
    assert media.backend == "embedded"
    assert str(media.rtpengine_ng) == "127.0.0.1:2223"
    assert str(media.rtpengine_dtmf_log) == "127.0.0.1:2224"


def test_rtpengine_settings_from_the_environment() -> None:
    env = {
        "VOICEPLANE_MEDIA_BACKEND": " RTPengine ",
        "VOICEPLANE_MEDIA_RTPENGINE_NG": "10.0.0.7:22222",
        "VOICEPLANE_MEDIA_RTPENGINE_DTMF_LOG": "",
    }
    media = load_config(None, env).media
    assert media.backend == "rtpengine"
    assert (media.rtpengine_ng.host, media.rtpengine_ng.port) == ("10.0.0.7", 22222)
    assert media.rtpengine_dtmf_log is None


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"VOICEPLANE_MEDIA_BACKEND": "asterisk"}, "media.backend"),
        ({"VOICEPLANE_MEDIA_RTPENGINE_NG": "127.0.0.1"}, "media.rtpengine_ng"),
        ({"VOICEPLANE_MEDIA_RTPENGINE_NG": "127.0.0.1:0"}, "port must not be 0"),
        ({"VOICEPLANE_MEDIA_RTPENGINE_DTMF_LOG": "127.0.0.1:x"}, "media.rtpengine_dtmf_log"),
    ],
)
def test_bad_rtpengine_settings_name_the_key(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(None, env)


@pytest.mark.parametrize(
    ("backend", "kind"), [("embedded", EmbeddedMedia), ("rtpengine", RtpengineMedia)]
)
async def test_the_platform_uses_the_chosen_backend(
    backend: str, kind: type, tmp_path: Path
) -> None:
    # async: building the platform makes the SIP UA, which wants a running loop.
    config = load_config(
        None, {"VOICEPLANE_MEDIA_BACKEND": backend, "VOICEPLANE_DATA_DIR": str(tmp_path)}
    )
    platform = build_platform(config)
    media = [s for s in platform.services if type(s).__name__ == "_MediaService"]
    assert len(media) == 1
    assert isinstance(media[0].media, kind)  # type: ignore[attr-defined]
