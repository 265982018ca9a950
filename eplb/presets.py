"""Mixture-of-Experts model shapes, from each model's published configuration.

Counts are of routed experts in MoE layers (dense layers and shared experts are
not balanced by EPLB). ``expert_bytes`` is one routed expert's weights: three
matrices (gate, up, down) of hidden x moe_intermediate, at the checkpoint's
bytes per parameter; the what-if sweep uses it to price redundant slots.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    """One model's MoE shape. num_groups is 1 for models without group-limited routing."""

    name: str
    num_layers: int  # MoE layers
    num_experts: int  # routed experts per layer
    num_groups: int
    top_k: int
    hidden_size: int
    moe_intermediate_size: int
    bytes_per_param: float
    source: str

    @property
    def expert_bytes(self) -> int:
        return int(3 * self.hidden_size * self.moe_intermediate_size * self.bytes_per_param)


_HF = "https://huggingface.co/{}/blob/main/config.json"

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        # 61 layers, first_k_dense_replace=3 -> 58 MoE; n_routed_experts=256, n_group=8,
        # topk_group=4, num_experts_per_tok=8; hidden 7168, moe_intermediate 2048; FP8 weights.
        ModelPreset("DeepSeek-V3/R1", 58, 256, 8, 8, 7168, 2048, 1, _HF.format("deepseek-ai/DeepSeek-V3")),
        # 27 layers, first_k_dense_replace=1 -> 26 MoE; 64 routed, top-6, n_group=1; hidden 2048,
        # moe_intermediate 1408; BF16.
        ModelPreset("DeepSeek-V2-Lite", 26, 64, 1, 6, 2048, 1408, 2, _HF.format("deepseek-ai/DeepSeek-V2-Lite")),
        # 61 layers, first_k_dense_replace=1 -> 60 MoE; 384 routed, top-8, n_group=1; hidden 7168,
        # moe_intermediate 2048; FP8 weights.
        ModelPreset("Kimi K2", 60, 384, 1, 8, 7168, 2048, 1, _HF.format("moonshotai/Kimi-K2-Instruct")),
        # 94 layers, all MoE; 128 experts, top-8; hidden 4096, moe_intermediate 1536; BF16.
        ModelPreset("Qwen3-235B-A22B", 94, 128, 1, 8, 4096, 1536, 2, _HF.format("Qwen/Qwen3-235B-A22B")),
        # 48 layers, all MoE; 128 experts, top-8; hidden 2048, moe_intermediate 768; BF16.
        ModelPreset("Qwen3-30B-A3B", 48, 128, 1, 8, 2048, 768, 2, _HF.format("Qwen/Qwen3-30B-A3B")),
        # 32 layers, 8 experts, top-2; hidden 4096, intermediate 14336; BF16.
        ModelPreset("Mixtral 8x7B", 32, 8, 1, 2, 4096, 14336, 2, _HF.format("mistralai/Mixtral-8x7B-v0.1")),
        # 36 layers, 128 experts, top-4; hidden 2880, intermediate 2880; MXFP4 experts (~4.25 bits).
        ModelPreset("gpt-oss-120b", 36, 128, 1, 4, 2880, 2880, 4.25 / 8, _HF.format("openai/gpt-oss-120b")),
        # 24 layers, 32 experts, top-4; hidden 2880, intermediate 2880; MXFP4 experts.
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
