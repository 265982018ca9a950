"""EPLB Explorer's compute core: expert-parallelism load balancing in pure torch.

``rebalance_experts`` has the positional signature of DeepSeek's and vLLM's EPLB.
Nothing in this package imports Streamlit.
"""

from .policies import DEFAULT_POLICY, POLICIES, Policy
from .rebalance import MODES, Topology, log2phy_from_phy2log, place_experts, rebalance_experts, validate_weight

__all__ = [
    "DEFAULT_POLICY",
    "MODES",
    "POLICIES",
    "Policy",
    "Topology",
    "log2phy_from_phy2log",
    "place_experts",
    "rebalance_experts",
    "validate_weight",
]
