"""Policy registry: ``POLICIES`` maps a name to a policy instance.

Callers look a policy up by name and never branch on it. To add one, write a
module with a ``Policy`` subclass and register an instance here.
"""

from .base import Policy
from .deepseek import DeepSeekGreedy
from .joint import JointSearch
from .zigzag import Zigzag

POLICIES: dict[str, Policy] = {p.name: p for p in (DeepSeekGreedy(), Zigzag(), JointSearch())}
DEFAULT_POLICY = "joint"

__all__ = ["POLICIES", "DEFAULT_POLICY", "Policy"]
