"""The terminal side of the ``voiceplane`` command (registered in :mod:`voiceplane.cli`).

- :mod:`~voiceplane.console.admin`: ``account create``, ``number add`` and ``calls``, which
  work on the store directly (the admin's own machine, no API key needed).
- :mod:`~voiceplane.console.calling`: ``call``, which places a call through the HTTP API of a
  running ``voiceplane serve`` and watches it until it completes.
- :mod:`~voiceplane.console.progress`: what changed between two call records, in words.
"""
