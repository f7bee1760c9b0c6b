"""voiceplane: a self-hosted programmable-voice platform.

The package is laid out by layer (see DESIGN.md): ``sip`` and ``media`` at the bottom,
``calls``, ``policy`` and ``callbacks`` in the middle, ``api`` and ``cli`` on top.
"""

__version__ = "0.1.0"
