"""voiceplane.sandbox: the built-in operator, a real SIP peer on loopback (DESIGN.md).

``rules`` is its dial plan (pure); ``operator`` the SIP side, ``SandboxOperator``.
"""

from .operator import HungUpBy, SandboxCall, SandboxOperator
from .rules import Action, Decision, DialPlan

__all__ = ["Action", "Decision", "DialPlan", "HungUpBy", "SandboxCall", "SandboxOperator"]
