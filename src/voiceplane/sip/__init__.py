"""The SIP layer: a sans-IO core and thin asyncio transports around it.

The core (message, transaction, dialog, legs, endpoint, digest, sdp) contains no networking
code and reads no clock: bytes and the current time go in, events and bytes come out. Only
``transport`` and ``ua`` touch asyncio. Nothing here knows of calls, accounts or HTTP.
"""

from voiceplane.native import use_native

# The compiled core (scripts/build_native.py) ahead of these sources, when it was built
# from them: see voiceplane.native.
use_native(__path__)
