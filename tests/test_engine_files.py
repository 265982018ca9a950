"""Engine files, made here as each engine's own writer makes them, and the files eplb writes for each engine.

The fixtures follow the engines' code line by line (cited at each builder): SGLang
0.5.23's expert-distribution recorder (``srt/eplb/expert_distribution.py``) in
stat, per_pass and per_token mode on 4 ranks, with true counts to compare against;
TensorRT-LLM's ``ExpertStatistic`` (``tensorrt_llm/_torch/expert_statistic.py``);
vllm-ascend's ``VllmEplbAdaptor._export_tensor_to_file``. What eplb writes is read
back as the engines read it: SGLang's ``compute_initial_expert_location_metadata``
parse and keyword call, vllm-ascend's ``ExpertLoadBalancer`` and TensorRT-LLM's
``MoeLoadBalancerConfig`` rules. ``scripts/check_sglang_loader.py`` runs SGLang's own
loader and dispatch on the same files where a copy of SGLang is at hand.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from eplb import Topology, rebalance_experts
from eplb import formats
from eplb.formats import FormatError, read_load_files, read_loads, read_placement, write_placement
from eplb.presets import PRESETS, ModelNeeded, custom_model, find_preset
from eplb.workloads import generate_load

NUM_RANKS, NUM_LAYERS, NUM_EXPERTS, NUM_PHYSICAL, TOP_K = 4, 5, 16, 24, 4
TOP_K_NUM = 8  # SGLang's _DetailSinglePassGatherer keeps 8 top-k columns (DeepSeek-V3's), -1 beyond top_k


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- SGLang's recorder, as it writes


def physical_to_logical_map(generator) -> torch.Tensor:
    """[layers, physical]: every expert once, then extra copies of random experts (the redundant slots)."""
    rows = []
    for _ in range(NUM_LAYERS):
        extra = torch.randint(0, NUM_EXPERTS, (NUM_PHYSICAL - NUM_EXPERTS,), generator=generator)
        rows.append(torch.cat([torch.arange(NUM_EXPERTS), extra])[torch.randperm(NUM_PHYSICAL, generator=generator)])
    return torch.stack(rows)


def route(mapping, tokens: int, generator):
    """One rank's forward pass: logical top-k per layer [layers, tokens, top_k] and the physical slots SGLang's
    dynamic dispatch picks for them (one replica of the expert, at random)."""
    logical = torch.randint(0, NUM_EXPERTS, (NUM_LAYERS, tokens, TOP_K), generator=generator)
    physical = torch.empty_like(logical)
    for layer in range(NUM_LAYERS):
        for t in range(tokens):
            for k in range(TOP_K):
                replicas = (mapping[layer] == logical[layer, t, k]).nonzero().flatten()
                physical[layer, t, k] = replicas[torch.randint(len(replicas), (1,), generator=generator)]
    return logical, physical


def global_physical_count(physical: torch.Tensor) -> torch.Tensor:
    """_convert_per_token_to_global_physical_count / _SelectExpertsSinglePassGatherer: int32 [layers, physical]."""
    out = torch.zeros(NUM_LAYERS, NUM_PHYSICAL, dtype=torch.int32)
    return out.scatter_add_(1, physical.reshape(NUM_LAYERS, -1), torch.ones_like(physical.reshape(NUM_LAYERS, -1),
                                                                                     dtype=torch.int32))


def recording(mode: str, num_passes: int = 3, seed: int = 0):
    """Every rank's dump file of one recording, and the true counts [passes, layers, experts] over all ranks."""
    generator = torch.Generator().manual_seed(seed)
    mapping = physical_to_logical_map(generator)
    truth = torch.zeros(num_passes, NUM_LAYERS, NUM_EXPERTS, dtype=torch.int64)
    files = {}
    for rank in range(NUM_RANKS):
        records = []
        for pass_id in range(num_passes):
            tokens = 2 + rank + pass_id  # ranks route different numbers of tokens
            logical, physical = route(mapping, tokens, generator)
            truth[pass_id] += torch.zeros(NUM_LAYERS, NUM_EXPERTS, dtype=torch.int64).scatter_add_(
                1, logical.reshape(NUM_LAYERS, -1), torch.ones(NUM_LAYERS, tokens * TOP_K, dtype=torch.int64))
            single_pass = {"global_physical_count": global_physical_count(physical)}
            if mode == "per_token":  # _DetailSinglePassGatherer.collect
                topk = torch.full((NUM_LAYERS, tokens, TOP_K_NUM), -1, dtype=torch.int32)
                topk[:, :, :TOP_K] = physical
                single_pass = dict(input_ids=list(range(tokens)), positions=list(range(tokens)),
                                   extend_seq_lens=[tokens], forward_mode=1, topk_ids_of_layer=topk,
                                   misc_objects=[], **single_pass)
            # _DetailAccumulator.append
            records.append(dict(forward_pass_id=100 + pass_id, rank=rank, gatherer_key="primary", **single_pass))
        # _DetailAccumulator.dump: expert_distribution_recorder_{time}_{rank}.pt
        files[f"expert_distribution_recorder_1700000000.0_{rank}.pt"] = torch_bytes(
            dict(records=records, last_physical_to_logical_map=mapping))
    return files, truth


def stat_dump(num_passes: int, buffer_size: int, seed: int = 0):
    """_StatAccumulator after ``num_passes`` passes on every rank, dumped by rank 0, and the counts it kept."""
    generator = torch.Generator().manual_seed(seed)
    mapping = physical_to_logical_map(generator)
    buffer = torch.zeros(buffer_size, NUM_LAYERS, NUM_PHYSICAL, dtype=torch.int32)  # _CircularBuffer
    index, passes = 0, []
    for _ in range(num_passes):
        step = torch.zeros(NUM_LAYERS, NUM_PHYSICAL, dtype=torch.int32)
        for _rank in range(NUM_RANKS):
            step += global_physical_count(route(mapping, 3, generator)[1])
        buffer[index] = step
        index = (index + 1) % buffer_size
        passes.append(step)
    # _convert_global_physical_count_to_logical_count, then all_reduce (the ranks' sum, done above)
    logical = torch.zeros(buffer_size, NUM_LAYERS, NUM_EXPERTS, dtype=torch.int32).scatter_add_(
        2, mapping.unsqueeze(0).expand(buffer_size, -1, -1).long(), buffer)
    dump = dict(rank=0, logical_count=logical, average_utilization_rate_over_window=None)
    return torch_bytes(dump), logical


@pytest.mark.parametrize("mode", ["per_pass", "per_token"])
def test_sglang_rank_files_sum_to_the_true_counts(mode):
    files, truth = recording(mode)
    loaded = read_loads(list(files.items()))
    assert loaded.format == f"SGLang {mode} dump"
    assert torch.equal(loaded.trace, truth.float()) and torch.equal(loaded.matrix, truth.sum(0).float())
    assert "4 rank files summed (ranks 0-3)" in loaded.description
    one = read_loads([next(iter(files.items()))])  # one rank alone: its own tokens, and it says so
    assert bool((one.matrix < loaded.matrix).any()) and "rank 0's tokens only" in one.description


def test_sglang_rank_files_in_a_zip_or_a_folder_read_the_same(tmp_path):
    files, truth = recording("per_token", seed=1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"dump/{name}", content)
    assert torch.equal(read_loads([("dump.zip", buffer.getvalue())]).matrix, truth.sum(0).float())
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    assert torch.equal(read_load_files([tmp_path]).trace, truth.float())


def test_sglang_rank_files_that_do_not_belong_together_are_refused():
    files, _ = recording("per_pass")
    other, _ = recording("per_token")
    first = next(iter(files.items()))
    with pytest.raises(FormatError, match="per_token dump but .* is per_pass"):
        read_loads([first, next(iter(other.items()))])
    with pytest.raises(FormatError, match="holds rank 0's records, like"):
        read_loads([first, (f"copy-{first[0]}", first[1])])


def test_sglang_stat_dump_keeps_the_passes_and_drops_the_steps_never_filled():
    data, logical = stat_dump(num_passes=3, buffer_size=8)
    loaded = read_loads([("expert_distribution_recorder_1700000000.0.pt", data)])
    assert torch.equal(loaded.trace, logical[:3].float())
    assert "5 never-filled buffer steps dropped (3 of 8 kept)" in loaded.description


def test_a_wrapped_sglang_stat_buffer_is_flagged_and_summed():
    data, logical = stat_dump(num_passes=11, buffer_size=8)  # the first 3 passes were overwritten
    loaded = read_loads([("expert_distribution_recorder_1700000000.0.pt", data)])
    assert loaded.trace is None and torch.equal(loaded.matrix, logical.sum(0).float())
    assert "the buffer is full (8 steps)" in loaded.description and "out of order" in loaded.description


def test_sglang_dump_of_a_model_with_dense_layers_keeps_its_decoder_rows():
    counts = torch.zeros(4, 61, 256, dtype=torch.int32)
    counts[:, 3:] = torch.randint(1, 50, (4, 58, 256), generator=torch.Generator().manual_seed(0))
    dump = dict(rank=0, logical_count=torch.cat([counts, torch.zeros(2, 61, 256, dtype=torch.int32)]),
                average_utilization_rate_over_window=None)
    loaded = read_loads([("expert_distribution_recorder_1.pt", torch_bytes(dump))])
    assert loaded.matrix.shape == (61, 256) and "rows 0-2 hold no load (dense layers" in loaded.description
    # balanced and written for SGLang as is: 61 rows, DeepSeek-V3/R1 told from the shape
    phy2log, _, _ = rebalance_experts(loaded.matrix, 288, 8, 4, 32)
    table = read_placement(write_placement("sglang-json", phy2log, Topology(288, 8, 4, 32), mode="auto",
                                           policy="joint"), "p.json")
    assert table.shape == (61, 288) and torch.equal(table[3:], phy2log[3:])
    assert torch.equal(table[:3], (torch.arange(288) % 256).repeat(3, 1))  # dense layers: the trivial map


# ---------------------------------------------------------------- TensorRT-LLM's expert statistics, as it writes


def trtllm_statistics(folder: Path, iterations=range(50, 53), layers=range(3, 7), raw: bool = True):
    """ExpertStatistic on every rank: rank{r}.safetensors with "{iter}_{layer}" bincounts, meta_info.json on rank 0.
    Newer versions also write rank{r}_raw.safetensors (the raw token_selected_experts), which are not counts."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(7)
    truth = torch.zeros(len(iterations), len(layers), NUM_EXPERTS, dtype=torch.int64)
    for rank in range(NUM_RANKS):
        records, raw_records = {}, {}
        for i, iteration in enumerate(iterations):
            for j, layer in enumerate(layers):
                selected = torch.randint(0, NUM_EXPERTS, (5 + rank, TOP_K), generator=generator, dtype=torch.int32)
                counts = torch.bincount(selected.flatten(), minlength=NUM_EXPERTS)
                records[f"{iteration}_{layer}"] = counts
                raw_records[f"{iteration}_{layer}"] = selected
                truth[i, j] += counts
        save_file(records, str(folder / f"rank{rank}.safetensors"))
        if raw:
            save_file(raw_records, str(folder / f"rank{rank}_raw.safetensors"))
    (folder / "meta_info.json").write_text(json.dumps({"num_experts": NUM_EXPERTS, "num_experts_per_token": TOP_K}))
    return truth


def test_trtllm_statistics_folder_sums_every_rank(tmp_path):
    truth = trtllm_statistics(tmp_path)
    loaded = read_load_files([tmp_path])
    assert loaded.format == "TensorRT-LLM expert statistics"
    assert torch.equal(loaded.trace, truth.float())
    assert loaded.layer_ids == (3, 4, 5, 6)
    assert "4 rank files summed" in loaded.description and "left out 4 raw" in loaded.description
    assert "iterations 50-52, decoder layers 3-6" in loaded.description
    one = read_load_files([tmp_path / "rank1.safetensors"])
    assert "with attention DP each rank counts its own tokens" in one.description


def test_trtllm_statistics_with_a_missing_pair_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"1_3": torch.ones(4, dtype=torch.int64), "2_4": torch.ones(4, dtype=torch.int64)},
              str(tmp_path / "rank0.safetensors"))
    with pytest.raises(FormatError, match="no counts for iteration 1, layer 4"):
        read_load_files([tmp_path / "rank0.safetensors"])


# ---------------------------------------------------------------- what eplb writes, read as each engine reads it


def placement_for(preset, slots_per_gpu_extra: int = 2, gpus: int = 8):
    weight = generate_load("zipf", preset.num_layers, preset.num_experts, seed=3, top_k=preset.top_k)
    slots = preset.num_experts + gpus * slots_per_gpu_extra
    slots += -slots % gpus
    groups = preset.num_groups if preset.num_groups > 1 else 1
    phy2log, _, _ = rebalance_experts(weight, slots, groups, 1, gpus)
    return phy2log, Topology(slots, groups, 1, gpus)


def sglang_loads(path: Path) -> dict:
    """compute_initial_expert_location_metadata's parse: .pt torch.load(weights_only), .json json.loads."""
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True, map_location="cpu")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_placement_has_the_rows_sglang_applies(name, tmp_path):
    preset = PRESETS[name]
    phy2log, topology = placement_for(preset)
    for fmt in ("sglang-json", "sglang-pt"):
        path = tmp_path / f"placement{formats.PLACEMENT_FORMATS[fmt].extension}"
        path.write_bytes(write_placement(fmt, phy2log, topology, mode="auto", policy="joint", model=preset))
        document = sglang_loads(path)
        assert list(document) == ["physical_to_logical_map"]  # passed to init_by_mapping as keywords
        table = torch.as_tensor(document["physical_to_logical_map"])
        assert table.shape == (preset.num_decoder_layers, topology.num_replicas)  # 61 / 27 / 48 / 94 / 36 ...
        assert table.shape[1] % topology.num_gpus == 0  # SGLang: num_physical_experts % ep_size == 0
        assert torch.equal(table[list(preset.moe_layer_ids)], phy2log)  # row r is decoder layer r
        assert torch.equal(read_placement(path.read_bytes(), path.name), table)
    layers = {"DeepSeek-V3/R1": 61, "Kimi K2": 61, "DeepSeek-V2-Lite": 27, "Qwen3-30B-A3B": 48,
              "Qwen3-235B-A22B": 94, "gpt-oss-120b": 36}
    assert preset.num_decoder_layers == layers.get(name, preset.num_decoder_layers)


@pytest.mark.parametrize("name", ["DeepSeek-V3/R1", "Qwen3-30B-A3B"])
def test_trtllm_config_is_what_moe_load_balancer_config_accepts(name, tmp_path):
    preset = PRESETS[name]
    phy2log, topology = placement_for(preset)
    text = write_placement("trtllm-yaml", phy2log, topology, mode="auto", policy="joint", model=preset)
    config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert set(config) == {"num_slots", "initial_global_assignments", "layer_updates_per_iter"}  # StrictBaseModel
    assert config["layer_updates_per_iter"] == 0 and config["num_slots"] == topology.num_replicas
    assignments = config["initial_global_assignments"]
    assert list(assignments) == list(preset.moe_layer_ids)  # keyed by decoder layer index (3..60 for DeepSeek)
    for row, layer in enumerate(preset.moe_layer_ids):  # get_layer_initial_global_assignments(layer_idx)
        assert len(assignments[layer]) == config["num_slots"] and assignments[layer] == phy2log[row].tolist()
    assert config["num_slots"] % topology.num_gpus == 0  # MoeLoadBalancerConfig.setup: divisible by ep_size
    assert torch.equal(read_placement(text, "placement.yaml"), phy2log)


def test_ascend_map_is_what_vllm_ascend_builds_its_expert_maps_from():
    phy2log = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1], [5, 4, 3, 2, 1, 0, 2, 3]])
    topology = Topology(8, 1, 1, 4)
    document = json.loads(write_placement("ascend-json", phy2log, topology, mode="auto", policy="joint",
                                          model=custom_model(2, 6, 1)))
    # ExpertLoadBalancer._expert_file_to_tensor and generate_expert_placement_map
    tensor = torch.tensor([[d["device_expert"] for d in layer["device_list"]] for layer in document["layer_list"]],
                          dtype=torch.int32)
    assert document["moe_layer_count"] == 2 and tensor.shape == (2, 4, 2)
    placement = torch.full((2, 4, 6), -1, dtype=torch.int32)
    for layer in range(2):
        for gpu in range(4):
            placement[layer, gpu, tensor[layer, gpu]] = torch.arange(2, dtype=torch.int32)
    for layer, gpu, slot in ((0, 3, 0), (1, 2, 1), (1, 0, 0)):  # each slot's expert maps to that local slot
        assert placement[layer, gpu, phy2log[layer, gpu * 2 + slot]] == slot
    assert torch.equal(read_placement(json.dumps(document).encode(), "map.json"), phy2log)


def test_ascend_writer_refuses_two_copies_of_an_expert_on_one_device():
    phy2log = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 1]])
    with pytest.raises(ValueError, match="MoE layer 0 puts two copies of expert 0 on device 0"):
        write_placement("ascend-json", phy2log, Topology(8, 1, 1, 4), mode="auto", policy="joint",
                        model=custom_model(1, 6, 0))


def test_ascend_map_as_vllm_ascends_adaptor_exports_it():
    """VllmEplbAdaptor._export_tensor_to_file: expert_maps [layers, devices, experts] of local slots (-1: none)."""
    phy2log = torch.tensor([[3, 0, 1, 4, 2, 5, 0, 2]])
    expert_maps = torch.full((1, 4, 6), -1)
    for p, expert in enumerate(phy2log[0].tolist()):
        expert_maps[0, p // 2, expert] = p % 2
    num_local_experts = int(expert_maps.max()) + 1
    record = {"moe_layer_count": 1, "layer_list": []}
    for layer_idx, layer_data in enumerate(expert_maps.tolist()):
        layer_record = {"layer_id": layer_idx, "device_count": len(layer_data), "device_list": []}
        for device_idx, experts in enumerate(layer_data):
            placement = [experts.index(i) for i in range(num_local_experts)]
            layer_record["device_list"].append({"device_id": device_idx, "device_expert": placement})
        record["layer_list"].append(layer_record)
    assert torch.equal(read_placement(json.dumps(record, indent=4).encode(), "expert_map.json"), phy2log)


def test_engine_files_are_refused_where_the_engine_would_refuse_them():
    with pytest.raises(FormatError, match="SGLang passes every key to its loader"):
        read_placement(json.dumps({"physical_to_logical_map": [[0, 1]], "note": 1}).encode(), "p.json")
    with pytest.raises(FormatError, match="MoeLoadBalancerConfig refuses other keys"):
        read_placement(b"num_slots: 2\ninitial_global_assignments: {3: [0, 1]}\nlayer_updates_per_iter: 0\n"
                       b"ep_size: 2\n", "p.yaml")
    with pytest.raises(FormatError, match="lists one expert twice"):
        read_placement(json.dumps({"moe_layer_count": 1, "layer_list": [{"layer_id": 0, "device_count": 1,
                                   "device_list": [{"device_id": 0, "device_expert": [0, 0, 1]}]}]}).encode(), "m.json")
    with pytest.raises(FormatError, match="anchors and aliases"):
        read_placement(b"num_slots: 2\ninitial_global_assignments: {3: &a [0, 1], 4: *a}\n", "p.yaml")


# ---------------------------------------------------------------- the layer rule


def test_the_layer_rule_takes_the_model_from_the_shape_or_refuses():
    phy2log, topology = placement_for(PRESETS["Mixtral 8x7B"])
    odd = torch.cat([phy2log, phy2log[:1]])  # 33 rows x 8 experts: no preset has this
    with pytest.raises(ModelNeeded, match="one row per decoder layer.*cannot be told from its shape"):
        write_placement("sglang-json", odd, topology, mode="auto", policy="joint")
    with pytest.raises(ValueError, match="the data has 33 rows, but Mixtral 8x7B has 32 decoder layers"):
        write_placement("sglang-json", odd, topology, mode="auto", policy="joint", model=find_preset("mixtral"))
    kept = write_placement("phy2log-csv", odd, topology, mode="auto", policy="joint")  # rows as given
    assert read_placement(kept, "p.csv").shape == (33, topology.num_replicas)
    dense = custom_model(33, 8, 2)  # a model without a preset: 2 dense + 33 MoE layers
    table = read_placement(write_placement("sglang-pt", odd, topology, mode="auto", policy="joint", model=dense),
                           "p.pt")
    assert table.shape == (35, topology.num_replicas) and torch.equal(table[2:], odd)


def test_logical_count_for_sglang_gets_zero_dense_rows():
    load = generate_load("zipf", 58, 256, seed=0)
    document = json.loads(formats.write_load("sglang-count-json", load))  # DeepSeek-V3/R1, told from the shape
    counts = torch.tensor(document["logical_count"])
    assert counts.shape == (61, 256) and not bool(counts[:3].any()) and torch.equal(counts[3:].float(), load)
