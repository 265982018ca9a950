"""The command line, mostly in-process through eplb.cli.main; two runs of `python -m eplb` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eplb import cli, formats
from eplb.presets import DEEPSEEK_README_WEIGHT

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def readme_csv(tmp_path):
    path = tmp_path / "readme.csv"
    path.write_text("\n".join(",".join(map(str, row)) for row in DEEPSEEK_README_WEIGHT) + "\n")
    return path


def test_rebalance_prints_before_after_and_bound_and_writes_placement(capsys, readme_csv, tmp_path):
    output = tmp_path / "placement.json"
    code, out, err = run(capsys, "rebalance", readme_csv, "--replicas", 16, "--groups", 4, "--nodes", 2,
                         "--gpus", 8, "--policy", "deepseek", "-o", output, "--format", "vllm-json")
    assert code == 0, err
    line = next(l for l in out.splitlines() if l.startswith("balancedness"))
    before, after, bound = (float(line.split(word)[1].split()[0]) for word in ("before", "after", "bound"))
    assert before < after <= bound + 1e-9
    assert "mode hierarchical" in out and "policy deepseek" in out
    document = json.loads(output.read_text())
    assert document["topology"] == {"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}
    # the DeepSeek README's published placement for this example
    assert document["phy2log"] == [
        [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]


@pytest.mark.parametrize("name, fmt", [("p.pt", "sglang-pt"), ("p.csv", "phy2log-csv"), ("p.json", "sglang-json"),
                                       ("p.yaml", "trtllm-yaml"), ("p.yml", "trtllm-yaml"), ("p.json", "ascend-json")])
def test_rebalance_output_formats_read_back(capsys, readme_csv, tmp_path, name, fmt):
    output = tmp_path / name
    redundant = 0 if fmt == "ascend-json" else 4  # vllm-ascend allows one copy of an expert per device
    args = ["rebalance", readme_csv, "--redundant", redundant, "--gpus", 4, "--policy", "zigzag", "-o", output]
    if name.endswith(".json"):
        args += ["--format", fmt]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    phy2log = formats.read_placement(output.read_bytes(), output.name)
    assert phy2log.shape == (2, 12 + redundant)
    assert formats.PLACEMENT_FORMATS[fmt].label in out
    assert "model: DeepSeek EPLB README toy" in out or formats.PLACEMENT_FORMATS[fmt].layers == "any"


def test_generate_then_convert_round_trip(capsys, tmp_path):
    trace_path = tmp_path / "trace.npy"
    code, out, _ = run(capsys, "generate", "--layers", 3, "--experts", 8, "--steps", 4, "--family", "hot",
                       "--seed", 7, "-o", trace_path)
    assert code == 0 and "trace of 4 steps" in out
    trace = formats.read_load_file(trace_path).trace
    assert trace.shape == (4, 3, 8)

    for name, fmt in (("t.pt", "pt"), ("t.json", "json"), ("t.npy", "npy")):
        code, _, err = run(capsys, "convert", trace_path, "-o", tmp_path / name, "--format", fmt)
        assert code == 0, err
        assert torch.equal(formats.read_load_file(tmp_path / name).trace, trace)

    code, _, err = run(capsys, "convert", trace_path, "-o", tmp_path / "s.json", "--format", "sglang-count-json",
                       "--dense-layers", 1)
    assert code == 0, err
    assert len(json.loads((tmp_path / "s.json").read_text())["logical_count"][0]) == 4  # 1 dense + 3 MoE rows
    assert "logical_count" in json.loads((tmp_path / "s.json").read_text())

    code, _, err = run(capsys, "convert", trace_path, "-o", tmp_path / "sum.csv")
    assert code == 2 and "--sum" in err
    code, _, err = run(capsys, "convert", trace_path, "-o", tmp_path / "sum.csv", "--sum")
    assert code == 0, err
    assert torch.equal(formats.read_load_file(tmp_path / "sum.csv").matrix, trace.sum(0))


def test_generate_from_preset_is_seeded(capsys, tmp_path):
    for name in ("a.csv", "b.csv"):
        assert run(capsys, "generate", "--preset", "mixtral", "-o", tmp_path / name)[0] == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert formats.read_load_file(tmp_path / "a.csv").matrix.shape == (32, 8)



def test_generate_lognormal_at_huge_skew_writes_a_usable_load(capsys, tmp_path):
    """A skew whose exp overflows float32 still gives a load with tokens (one hot expert per row), not zeros."""
    assert run(capsys, "generate", "mixtral", "--family", "lognormal", "--skew", 500, "-o", tmp_path / "x.npy")[0] == 0
    matrix = formats.read_load_file(tmp_path / "x.npy").matrix
    assert matrix.shape == (32, 8) and bool((matrix.sum(1) > 0).all())

@pytest.mark.parametrize(
    "argv, message",
    [
        (["rebalance", "{csv}", "--replicas", 14, "--gpus", 8], "divisible by num_gpus"),
        (["rebalance", "{csv}", "--gpus", "two"], "'two' is not a whole number"),
        (["rebalance", "{csv}"], "required: --gpus"),
        (["rebalance", "{csv}", "--gpus", 4, "--replicas", 16, "--redundant", 4], "not allowed with"),
        (["rebalance", "{csv}", "--gpus", 4, "--policy", "magic"], "invalid choice"),
        (["rebalance", "{missing}", "--gpus", 4], "cannot be read"),
        (["rebalance", "{bad}", "--gpus", 4], "row 2, column 3"),
        (["rebalance", "{csv}", "--gpus", 4, "-o", "{tmp}/p.xlsx"], "cannot tell the format"),
        (["rebalance", "{csv}", "--gpus", 4, "-o", "{tmp}/p.json"], "several formats write .json files"),
        (["rebalance", "{csv}", "--gpus", 4, "-o", "{tmp}/no/such/dir/p.pt"], "cannot write"),
        (["rebalance", "{csv}", "--gpus", 4, "-o", "{tmp}/p.pt", "--model", "Kimi K2"], "but Kimi K2 has 384"),
        (["rebalance", "{csv}", "--gpus", 4, "-o", "{tmp}/p.pt", "--model", "nonesuch"], "is not a preset"),
        (["rebalance", "{odd}", "--gpus", 3, "-o", "{tmp}/p.pt"], "--dense-layers K"),
        (["rebalance", "{csv}", "--gpus", 8, "--replicas", 1000000000000], "must be between 1 and"),
        (["rebalance", "{csv}", "--gpus", 8, "--redundant", 100000000], "above the limit"),
        (["generate", "--layers", 1000000000, "--experts", 1000000000, "-o", "{tmp}/x.npy"], "above the limit"),
        (["generate", "DeepSeek-V3/R1", "--steps", 1000000, "-o", "{tmp}/x.npy"], "above the limit"),
        (["generate", "mixtral", "--tokens", "1e40", "-o", "{tmp}/x.npy"], "not a whole number"),
        (["generate", "mixtral", "--tokens", 10**40, "-o", "{tmp}/x.npy"], "must be between 1 and"),
        (["generate", "mixtral", "--seed", 10**30, "-o", "{tmp}/x.npy"], "must be between 0 and"),
        (["generate", "mixtral", "--skew", "inf", "-o", "{tmp}/x.npy"], "finite"),
        (["generate", "mixtral", "--steps", 3, "--drift", "1e300", "-o", "{tmp}/x.npy"], "overflowed"),
        (["generate", "mixtral", "-o", "{tmp}/x.json"], "several formats write .json"),
        (["generate", "mixtral", "--preset", "kimi", "-o", "{tmp}/x.npy"], "two presets"),
        (["convert", "{csv}", "{bad}", "-o", "{tmp}/x.npy"], "read one at a time"),
        (["generate", "-o", "{tmp}/x.csv"], "--preset"),
        (["generate", "--preset", "deepseek", "-o", "{tmp}/x.csv"], "matches several presets"),
        (["generate", "--layers", 2, "--experts", 4, "--family", "zero", "--skew", 2, "-o", "{tmp}/x.csv"], "below 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, readme_csv, tmp_path, argv, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,x\n")
    odd = tmp_path / "odd.csv"
    odd.write_text("1,2,3\n4,5,6\n7,8,9\n")  # 3 x 3: no preset has this shape
    paths = {"csv": readme_csv, "missing": tmp_path / "missing.csv", "bad": bad, "odd": odd, "tmp": tmp_path}
    code, out, err = run(capsys, *[a.format(**paths) if isinstance(a, str) else a for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("eplb: error: ")
    assert message in err
    assert "Traceback" not in err + out


def test_help_for_each_subcommand(capsys):
    for command in ("rebalance", "convert", "generate"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and f"eplb {command}" in out and "--format" in out
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("rebalance", "convert", "generate", "bench"))


def test_bench_forwards_its_arguments(capsys, monkeypatch):
    from eplb import bench

    seen = []
    monkeypatch.setattr(bench, "main", lambda argv=None: seen.append(argv) or 0)
    assert cli.main(["bench", "--quick", "--markdown"]) == 0
    assert seen == [["--quick", "--markdown"]]


def _python_m_eplb(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "eplb", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_m_eplb_end_to_end(tmp_path, capsys):
    """Two real processes: rebalance a trace to an SGLang file, then a bad call."""
    assert cli.main(["generate", "--layers", "2", "--experts", "8", "--steps", "3", "-o", str(tmp_path / "t.json"),
                     "--format", "json"]) == 0
    done = _python_m_eplb("rebalance", "t.json", "--redundant", 8, "--gpus", 4, "-o", "p.pt", "--dense-layers", 0,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "balancedness" in done.stdout
    assert formats.read_placement((tmp_path / "p.pt").read_bytes(), "p.pt").shape == (2, 16)

    done = _python_m_eplb("rebalance", "t.json", "--gpus", 3, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr


def _readme_commands() -> list[str]:
    """The `python -m eplb ...` lines of the README's code blocks, in order."""
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```")[1::2]
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("python -m eplb")]


def test_every_readme_command_runs(capsys, tmp_path, monkeypatch):
    """The README's command-line block, line by line, in a fresh folder: each exits 0 and writes what it names."""
    import shlex

    commands = _readme_commands()
    assert len(commands) >= 8, commands
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)[3:]
        code, out, err = run(capsys, *argv)
        assert code == 0, f"{command}: {err}"
        if "-o" in argv:
            assert (tmp_path / argv[argv.index("-o") + 1]).stat().st_size > 0, command
    assert formats.read_placement((tmp_path / "placement.pt").read_bytes(), "placement.pt").shape == (61, 288)
    assert formats.read_placement((tmp_path / "eplb.yaml").read_bytes(), "eplb.yaml").shape == (58, 288)
    assert formats.read_load_file(tmp_path / "load.npy").matrix.shape == (58, 256)
