"""Other projects' balancers for the benchmark, loaded by path from a local copy.

Nothing here is vendored: each peer is a file of another project (read, never copied)
that the benchmark runs beside ours when a local copy is present, and skips, saying so,
when it is not. The copy's directory comes from ``--peers DIR``, else the environment
variable ``EPLB_PEERS``, else the folder ``peers`` beside the project root. Inside it:

* ``sglang/sglang/srt/eplb/eplb_algorithms/deepseek_vec.py``: SGLang's vectorized
  DeepSeek balancer, which takes the window of per-step loads [steps, layers, experts]
  as SGLang's EPLB manager hands it the recorder's buffer; global mode is its decode
  variant, hierarchical its prefill one;
* ``adrs/solutions/eplb/{gepa,LEVI}/resources/solution.py``: the GEPA- and LEVI-evolved
  programs of the ADRS EPLB leaderboard, global placements planned on the window's sum
  (the ADRS evaluator hands them a summed window);
* ``adrs/problems/eplb/evaluator.py``: the ADRS evaluator, whose ``simulate_inference``
  checks our scoring on the topology it is written for.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import torch

from .bench import Planner
from .rebalance import Topology

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEEPSEEK_VEC = "sglang/sglang/srt/eplb/eplb_algorithms/deepseek_vec.py"
PROGRAMS = {
    "gepa": "adrs/solutions/eplb/gepa/resources/solution.py",
    "levi": "adrs/solutions/eplb/LEVI/resources/solution.py",
}
ADRS_EVALUATOR = "adrs/problems/eplb/evaluator.py"


def peers_dir(option: str | None = None) -> Path:
    """Where the local copy of the peers lives: the option, else $EPLB_PEERS, else <root>/../peers."""
    if option:
        return Path(option)
    if os.environ.get("EPLB_PEERS"):
        return Path(os.environ["EPLB_PEERS"])
    return PROJECT_ROOT.parent / "peers"


def load_module(path: Path, name: str) -> ModuleType:
    """Import one file by path under a private module name."""
    spec = importlib.util.spec_from_file_location(f"eplb_peer_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look a module up by name
    spec.loader.exec_module(module)
    return module


def deepseek_vec_planner(module: ModuleType) -> Planner:
    """SGLang's ``deepseek_vec``: the per-step window as SGLang passes it, int32 maps widened to int64."""
    def plan(window: torch.Tensor, t: Topology, mode: str) -> torch.Tensor:
        phy2log, _, _ = module.rebalance_experts(
            tokens_per_expert=window, num_physical_experts=t.num_replicas,
            num_local_physical_experts=t.slots_per_gpu, num_groups=t.num_groups, num_nodes=t.num_nodes,
            enable_hierarchical=mode == "hierarchical")
        return phy2log.long()
    return Planner("deepseek_vec", plan)


def program_planner(name: str, module: ModuleType) -> Planner:
    """An ADRS program: ``rebalance_experts(weight [L, E], P, groups, nodes, GPUs)`` on the window's sum."""
    def plan(window: torch.Tensor, t: Topology, mode: str) -> torch.Tensor:
        phy2log, _, _ = module.rebalance_experts(window.sum(0), t.num_replicas, t.num_groups, t.num_nodes,
                                                 t.num_gpus)
        return phy2log.long()
    return Planner(name, plan, modes=("global",))


def load_planners(directory: Path) -> tuple[list[Planner], list[str]]:
    """(the peers found under directory as planners, one line per peer skipped and why)."""
    planners, skipped = [], []
    path = directory / DEEPSEEK_VEC
    if path.is_file():
        planners.append(deepseek_vec_planner(load_module(path, "deepseek_vec")))
    else:
        skipped.append(f"deepseek_vec: skipped, {path} not found")
    for name, relative in PROGRAMS.items():
        path = directory / relative
        if path.is_file():
            planners.append(program_planner(name, load_module(path, name)))
        else:
            skipped.append(f"{name}: skipped, {path} not found")
    return planners, skipped


def adrs_evaluator(directory: Path) -> ModuleType | None:
    """The ADRS evaluator's module from the local copy, or None when it is absent."""
    path = directory / ADRS_EVALUATOR
    return load_module(path, "adrs_evaluator") if path.is_file() else None
