"""voiceplane.media (see DESIGN.md, Layers): prompts into calls, digits out of them.

backend   the MediaBackend / MediaSession interface the call engine codes against
embedded  EmbeddedMedia: in-process RTP over UDP (G.711, RFC 4733 DTMF)
rtp, dtmf, g711   sans-IO packets, DTMF detection and the codecs embedded uses
jitter, recorder  received audio reordered (sans-IO) and written to a WAV by record()
ticker            one timer per backend that sends every playing session's next frame
audio, tts        prompts as 8 kHz mono s16le PCM: WAV files (sox) and speech (espeak-ng)
"""
