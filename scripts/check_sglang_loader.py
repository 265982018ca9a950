"""Feed the placement files ``eplb`` writes to SGLang's own code: its ``--init-expert-location`` loader and its
first per-layer dispatch, unmodified, with the server state around them stubbed.

SGLang's ``srt/eplb`` modules are read from a local copy (``--peers DIR``, default the
environment variable EPLB_PEERS, else ``peers`` beside the project root), at
``DIR/sglang/sglang/srt/eplb``: the modules unpacked from the sglang 0.5.23 wheel.
Without them the script says so and exits 0, checking nothing.

For every model preset: a generated load (one row per MoE layer) is balanced, written
as ``sglang-json`` and ``sglang-pt`` with the preset as the model, and loaded by
``compute_initial_expert_location_metadata``; then every MoE layer's
``ExpertLocationDispatchInfo.init_new(layer_id)`` and ``topk_ids_logical_to_physical``
run (static and dynamic dispatch), and each physical id must map back to the logical
expert routed. A map with one row per MoE layer (what the project wrote before the
layer rule) is fed too, and must fail at the first MoE layer past its rows.

    PYTHONPATH=. python scripts/check_sglang_loader.py [--peers DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eplb import formats, rebalance_experts  # noqa: E402
from eplb.presets import PRESETS  # noqa: E402
from eplb.workloads import generate_load  # noqa: E402


def _stub_server(peers: Path) -> SimpleNamespace:
    """Make SGLang's eplb modules importable with the runtime context they read stubbed; return that state."""
    sys.path.insert(0, str(peers / "sglang"))
    state = SimpleNamespace(
        exec=SimpleNamespace(moe=SimpleNamespace(
            ep_num_redundant_experts=0, ep_dispatch_algorithm="static", moe_a2a_backend="none",
            ep_join_mode="none", init_expert_location="trivial", eplb_algorithm="auto")),
        parallel=SimpleNamespace(ep_size=1, nnodes=1, elastic_ep_initial_size=None, tp_size=1, ep_join_rank_offset=0),
        device=SimpleNamespace(device="cpu"),
        resources=SimpleNamespace(expert_location_metadata=None),
    )
    context = types.ModuleType("sglang.srt.runtime_context")
    context.get_exec = lambda: state.exec
    context.get_parallel = lambda: state.parallel
    context.get_device = lambda: state.device
    context.get_resources = lambda: state.resources
    sys.modules["sglang.srt.runtime_context"] = context
    elastic = types.ModuleType("sglang.srt.elastic_ep.elastic_ep")
    elastic.elastic_expanded_world_enabled = lambda: False
    sys.modules["sglang.srt.elastic_ep"] = types.ModuleType("sglang.srt.elastic_ep")
    sys.modules["sglang.srt.elastic_ep.elastic_ep"] = elastic
    return state


def _check_model(sgl, state, preset, path: Path) -> str:
    """Load one file with SGLang's loader, dispatch every MoE layer; return what happened."""
    location, dispatch = sgl
    state.exec.moe.init_expert_location = str(path)
    model_config = SimpleNamespace()  # what the model class's get_model_config_for_expert_location returns:
    # num_layers=config.num_hidden_layers, num_logical_experts=n_routed_experts / num_experts (deepseek_v2.py,
    # qwen3_moe.py, gpt_oss.py in the 0.5.23 wheel)
    config = location.ModelConfigForExpertLocation(num_layers=preset.num_decoder_layers,
                                                   num_logical_experts=preset.num_experts,
                                                   num_groups=preset.num_groups if preset.num_groups > 1 else None)
    location.ModelConfigForExpertLocation.from_model_config = staticmethod(lambda _: config)
    generator = torch.Generator().manual_seed(0)
    for algorithm in ("static", "dynamic"):  # static dispatch maps are built at load time: load once per algorithm
        state.exec.moe.ep_dispatch_algorithm = algorithm
        state.resources.expert_location_metadata = None
        metadata = location.compute_initial_expert_location_metadata(model_config, moe_ep_rank=0)
        location.set_global_expert_location_metadata(metadata)
        for layer_id in preset.moe_layer_ids:
            info = dispatch.ExpertLocationDispatchInfo.init_new(layer_id)
            topk = torch.randint(0, preset.num_experts, (64, preset.top_k), generator=generator, dtype=torch.int32)
            physical = dispatch.topk_ids_logical_to_physical(topk, info)
            back = metadata.physical_to_logical_map[layer_id][physical.long()]
            if not torch.equal(back, topk.long()):
                raise AssertionError(f"{path.name}: layer {layer_id} dispatched to the wrong experts ({algorithm})")
    return f"{metadata.num_layers} rows x {metadata.num_physical_experts} slots, {len(preset.moe_layer_ids)} MoE " \
        "layers dispatched (static and dynamic), every physical id maps back to its expert"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=os.environ.get("EPLB_PEERS", str(ROOT.parent / "peers")))
    args = parser.parse_args(argv)
    peers = Path(args.peers)
    if not (peers / "sglang" / "sglang" / "srt" / "eplb" / "expert_location.py").exists():
        print(f"skipped: SGLang's eplb modules not found under {peers}/sglang (pass --peers DIR)")
        return 0
    state = _stub_server(peers)
    from sglang.srt.eplb import expert_location, expert_location_dispatch

    sgl = (expert_location, expert_location_dispatch)
    print(f"SGLang eplb modules from {expert_location.__file__}")
    with tempfile.TemporaryDirectory() as tmp:
        # SGLang's logical_count path asks torch.distributed for this process's rank: one process, one rank
        torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/group", rank=0, world_size=1)
        for name, preset in PRESETS.items():
            weight = generate_load("zipf", preset.num_layers, preset.num_experts, seed=1, top_k=preset.top_k)
            gpus = 8 if preset.num_experts >= 8 else 4
            redundant = gpus * 2 if preset.num_experts + gpus * 2 <= 4 * preset.num_experts else gpus
            slots = preset.num_experts + redundant
            slots += -slots % gpus
            groups = preset.num_groups if preset.num_experts % preset.num_groups == 0 else 1
            phy2log, _, _ = rebalance_experts(weight, slots, groups, 1, gpus)
            state.parallel.ep_size = gpus
            state.exec.moe.ep_num_redundant_experts = slots - preset.num_experts
            topology = eplb_topology(slots, groups, gpus)
            for fmt in ("sglang-json", "sglang-pt"):
                stem = name.replace("/", "-").replace(" ", "-")
                path = Path(tmp) / f"{stem}{formats.PLACEMENT_FORMATS[fmt].extension}"
                path.write_bytes(formats.write_placement(fmt, phy2log, topology, mode="auto", policy="joint",
                                                         model=preset))
                print(f"{name:26s} {fmt:17s} ok: {_check_model(sgl, state, preset, path)}")
            for fmt in ("sglang-count-json", "sglang-count-pt"):  # a load: SGLang balances it at start-up
                path = Path(tmp) / f"count{formats.LOAD_FORMATS[fmt].extension}"
                path.write_bytes(formats.write_load(fmt, weight, model=preset))
                print(f"{name:26s} {fmt:17s} ok: {_check_model(sgl, state, preset, path)}")
            if preset.dense_layers:  # the layout before the layer rule: one row per MoE layer
                path = Path(tmp) / "moe-rows.json"
                path.write_text('{"physical_to_logical_map": %s}' % phy2log.tolist())
                try:
                    _check_model(sgl, state, preset, path)
                    print(f"{name:26s} MoE rows          UNEXPECTED: SGLang took a map without the dense layers")
                    return 1
                except (IndexError, AssertionError) as exc:
                    print(f"{name:26s} MoE rows          fails as expected: {type(exc).__name__}: {exc}")
    return 0


def eplb_topology(slots: int, groups: int, gpus: int):
    from eplb import Topology

    return Topology(slots, groups, 1, gpus)


if __name__ == "__main__":
    raise SystemExit(main())
