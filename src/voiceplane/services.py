"""The services that ``voiceplane serve`` runs next to the HTTP API.

This is the one place where they are assembled from the settings. They start in list order
and stop in reverse (see :func:`voiceplane.server.serve`), so a service that another one
uses goes first.
"""

from voiceplane.config import Config
from voiceplane.server import Service
from voiceplane.sip_service import SipService


def build_services(config: Config) -> list[Service]:
    """The long-running services for ``config``, in start order."""
    services: list[Service] = [SipService(config.sip)]
    # Later, in this order: the sandbox operator when config.trunk.is_sandbox, the call
    # engine, the callback dispatcher.
    return services
