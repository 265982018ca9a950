"""Mixture-of-Experts model shapes, from each model's published configuration.

Counts are of routed experts in MoE layers (dense layers and shared experts are
not balanced by EPLB). ``expert_bytes`` is one routed expert's weights: three
matrices (gate, up, down) of hidden x moe_intermediate, at the checkpoint's
bytes per parameter; the what-if sweep uses it to price redundant slots.

The layer rule. A load or placement made here has one row per MoE layer. Some
engines index their maps by decoder layer instead, dense layers included:
SGLang's ``--init-expert-location`` applies row r to decoder layer r, and
TensorRT-LLM keys its static placement by decoder layer index. DeepSeek-V3/R1
(61 decoder layers, the first 3 dense), Kimi K2 (61, the first 1 dense) and
DeepSeek-V2-Lite (27, the first 1 dense) differ; in the other presets every
decoder layer is a MoE layer. ``ModelPreset.decoder_rows`` and ``moe_rows``
convert between the two layouts; ``model_for_shape`` names the preset a
``[rows, experts]`` shape belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelPreset:
    """One model's MoE shape. num_groups is 1 for models without group-limited routing.

    dense_layers: how many of the first decoder layers are dense (no experts), the
    configuration's ``first_k_dense_replace``; the remaining ``num_layers`` decoder
    layers are MoE layers. topk_group: the configuration's ``topk_group`` (a token
    picks this many of the ``num_groups`` groups, then its ``top_k`` experts inside
    them); None when routing is not group-limited.
    """

    name: str
    num_layers: int  # MoE layers
    num_experts: int  # routed experts per layer
    num_groups: int
    top_k: int
    hidden_size: int
    moe_intermediate_size: int
    bytes_per_param: float
    source: str
    dense_layers: int = 0
    topk_group: int | None = None  # group-limited routing: a token's experts lie in at most this many groups

    @property
    def expert_bytes(self) -> int:
        return int(3 * self.hidden_size * self.moe_intermediate_size * self.bytes_per_param)

    @property
    def num_decoder_layers(self) -> int:
        """Decoder layers, dense ones included (the configuration's ``num_hidden_layers``)."""
        return self.dense_layers + self.num_layers

    @property
    def moe_layer_ids(self) -> range:
        """The decoder layer index of each MoE layer."""
        return range(self.dense_layers, self.num_decoder_layers)

    def describe_layers(self) -> str:
        """E.g. "61 decoder layers, the first 3 dense, 58 MoE"."""
        if not self.dense_layers:
            return f"{self.num_decoder_layers} decoder layers, all MoE"
        return f"{self.num_decoder_layers} decoder layers, the first {self.dense_layers} dense, {self.num_layers} MoE"

    def check_rows(self, num_rows: int, num_experts: int) -> None:
        """ValueError unless a [num_rows, num_experts] table fits this model (MoE or decoder rows)."""
        if num_experts != self.num_experts:
            raise ValueError(f"the data has {num_experts} experts per layer, but {self.name} has {self.num_experts}")
        if num_rows not in (self.num_layers, self.num_decoder_layers):
            wanted = f"{self.num_layers}" if not self.dense_layers else \
                f"{self.num_layers} (one per MoE layer) or {self.num_decoder_layers} (one per decoder layer)"
            raise ValueError(f"the data has {num_rows} rows, but {self.name} has {self.describe_layers()}: "
                             f"expected {wanted} rows")

    def moe_rows(self, table: torch.Tensor) -> torch.Tensor:
        """A table [..., MoE or decoder layers, X] -> its MoE layers' rows [..., MoE layers, X]."""
        rows = table.shape[-2]
        if rows == self.num_layers:
            return table
        if rows == self.num_decoder_layers:
            return table[..., self.dense_layers:, :]
        raise ValueError(f"{rows} rows fit neither {self.name}'s {self.num_layers} MoE layers "
                         f"nor its {self.num_decoder_layers} decoder layers")

    def decoder_rows(self, table: torch.Tensor, dense_row: torch.Tensor | None = None) -> torch.Tensor:
        """A table [..., MoE or decoder layers, X] -> [..., decoder layers, X], dense rows set to ``dense_row`` [X].

        ``dense_row`` None means zeros (a load: dense layers route no token). For a
        placement pass ``trivial_row``: the map engines start from.
        """
        moe = self.moe_rows(table)
        shape = (*table.shape[:-2], self.num_decoder_layers, table.shape[-1])
        out = table.new_zeros(shape) if dense_row is None else dense_row.to(table.dtype).expand(shape).clone()
        out[..., self.dense_layers:, :] = moe
        return out

    def trivial_row(self, num_slots: int) -> torch.Tensor:
        """The placement engines start from, for one layer: slot p holds expert p % experts."""
        return torch.arange(num_slots) % self.num_experts


_HF = "https://huggingface.co/{}/blob/main/config.json"

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        # num_hidden_layers=61, first_k_dense_replace=3, moe_layer_freq=1 -> 58 MoE; n_routed_experts=256,
        # n_group=8, topk_group=4, num_experts_per_tok=8; hidden 7168, moe_intermediate 2048; FP8 weights.
        ModelPreset("DeepSeek-V3/R1", 58, 256, 8, 8, 7168, 2048, 1, _HF.format("deepseek-ai/DeepSeek-V3"),
                    dense_layers=3, topk_group=4),
        # num_hidden_layers=27, first_k_dense_replace=1 -> 26 MoE; 64 routed, top-6, n_group=1; hidden 2048,
        # moe_intermediate 1408; BF16.
        ModelPreset("DeepSeek-V2-Lite", 26, 64, 1, 6, 2048, 1408, 2, _HF.format("deepseek-ai/DeepSeek-V2-Lite"),
                    dense_layers=1),
        # num_hidden_layers=61, first_k_dense_replace=1 -> 60 MoE; 384 routed, top-8, n_group=1; hidden 7168,
        # moe_intermediate 2048; FP8 weights.
        ModelPreset("Kimi K2", 60, 384, 1, 8, 7168, 2048, 1, _HF.format("moonshotai/Kimi-K2-Instruct"),
                    dense_layers=1),
        # num_hidden_layers=94, decoder_sparse_step=1, mlp_only_layers=[] -> all MoE; 128 experts, top-8;
        # hidden 4096, moe_intermediate 1536; BF16.
        ModelPreset("Qwen3-235B-A22B", 94, 128, 1, 8, 4096, 1536, 2, _HF.format("Qwen/Qwen3-235B-A22B")),
        # num_hidden_layers=48, decoder_sparse_step=1, mlp_only_layers=[] -> all MoE; 128 experts, top-8;
        # hidden 2048, moe_intermediate 768; BF16.
        ModelPreset("Qwen3-30B-A3B", 48, 128, 1, 8, 2048, 768, 2, _HF.format("Qwen/Qwen3-30B-A3B")),
        # num_hidden_layers=32, every layer MoE; 8 experts, top-2; hidden 4096, intermediate 14336; BF16.
        ModelPreset("Mixtral 8x7B", 32, 8, 1, 2, 4096, 14336, 2, _HF.format("mistralai/Mixtral-8x7B-v0.1")),
        # num_hidden_layers=36, every layer MoE; 128 experts, top-4; hidden 2880, intermediate 2880;
        # MXFP4 experts (~4.25 bits).
        ModelPreset("gpt-oss-120b", 36, 128, 1, 4, 2880, 2880, 4.25 / 8, _HF.format("openai/gpt-oss-120b")),
        # num_hidden_layers=24, every layer MoE; 32 experts, top-4; hidden 2880, intermediate 2880; MXFP4 experts.
        ModelPreset("gpt-oss-20b", 24, 32, 1, 4, 2880, 2880, 4.25 / 8, _HF.format("openai/gpt-oss-20b")),
        # The worked example in deepseek-ai/EPLB's README.
        ModelPreset("DeepSeek EPLB README toy", 2, 12, 4, 2, 0, 0, 0, "https://github.com/deepseek-ai/EPLB#example"),
    )
}

DEEPSEEK_README_WEIGHT = [
    [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
    [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
]
"""The load matrix of DeepSeek's README example (16 slots, 4 groups, 2 nodes, 8 GPUs)."""


def _squash(name: str) -> str:
    return name.lower().replace(" ", "")


def find_preset(name: str) -> ModelPreset:
    """A preset by name, case and spaces ignored; a unique prefix is enough. ValueError naming the choices."""
    wanted = _squash(name)
    exact = [p for key, p in PRESETS.items() if _squash(key) == wanted]
    matches = exact or [p for key, p in PRESETS.items() if _squash(key).startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several presets" if matches else "is not a preset"
    raise ValueError(f"{name!r} {problem}: choose one of {', '.join(repr(k) for k in PRESETS)}")


def custom_model(num_layers: int, num_experts: int, dense_layers: int) -> ModelPreset:
    """A model that has no preset: ``num_layers`` MoE layers after ``dense_layers`` dense ones."""
    name = f"a model with {dense_layers} dense + {num_layers} MoE layers"
    return ModelPreset(name, num_layers, num_experts, 1, 1, 0, 0, 0, "", dense_layers=dense_layers)


def models_for_shape(num_rows: int, num_experts: int) -> list[ModelPreset]:
    """Presets a [num_rows, num_experts] table fits: one row per MoE layer or one per decoder layer."""
    return [p for p in PRESETS.values()
            if p.num_experts == num_experts and num_rows in (p.num_layers, p.num_decoder_layers)]


def model_for_shape(num_rows: int, num_experts: int) -> ModelPreset | None:
    """The one preset a [num_rows, num_experts] table fits, or None when none or several do."""
    found = models_for_shape(num_rows, num_experts)
    return found[0] if len(found) == 1 else None


class ModelNeeded(ValueError):
    """The layer rule needs the model, and the shape does not tell it; the caller says how to name it."""


def resolve_model(num_rows: int, num_experts: int, model: ModelPreset | None = None, *, wants: str) -> ModelPreset:
    """The model a [num_rows, num_experts] table belongs to: ``model`` when given (checked), else the one preset
    the shape fits (``model_for_shape``). ``wants`` says what needs it, e.g. "SGLang wants one row per decoder layer".

    Raises ValueError when the table does not fit ``model``, ModelNeeded when no model is
    given and the shape fits no preset or several.
    """
    if model is not None:
        model.check_rows(num_rows, num_experts)
        return model
    found = models_for_shape(num_rows, num_experts)
    if len(found) == 1:
        return found[0]
    if found:
        why = f"it fits {' and '.join(p.name for p in found)}"
    else:
        why = f"no model preset has {num_experts} experts in {num_rows} MoE or decoder layers"
    raise ModelNeeded(f"{wants}, and the model of this [{num_rows}, {num_experts}] data cannot be told from its "
                      f"shape ({why}): say which model it is")
