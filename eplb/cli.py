"""``python -m eplb``: rebalance a load file, convert between formats, generate samples, run the benchmark.

Every subcommand has ``--help``. Bad input exits with code 2 and one line on
stderr naming what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import sys

from . import formats
from .metrics import evaluate, initial_phy2log
from .policies import DEFAULT_POLICY, POLICIES
from .presets import PRESETS
from .rebalance import MODES, Topology, rebalance_experts
from .workloads import FAMILIES, generate_load, generate_trace

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line instead of the usage block."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def _format_list(table: dict[str, tuple[str, str, str]]) -> str:
    return "; ".join(f"{key} ({ext}): {label}" for key, (label, ext, _) in table.items())


def _output_format(args, table: dict[str, tuple[str, str, str]]) -> str:
    if args.format:
        return args.format
    try:
        return formats.format_for_path(args.output, table)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _write(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _fmt(value: float | None) -> str:
    return "n/a (no load)" if value is None else f"{value:.4f}"


# ---------------------------------------------------------------- subcommands


def cmd_rebalance(args) -> int:
    loaded = formats.read_load_file(args.input)
    weight = loaded.matrix
    num_layers, num_experts = weight.shape
    num_replicas = args.replicas if args.replicas is not None else num_experts + args.redundant
    topology = Topology(num_replicas, args.groups, args.nodes, args.gpus)
    mode = topology.validate(num_experts, args.mode)
    phy2log, _, _ = rebalance_experts(weight, num_replicas, args.groups, args.nodes, args.gpus,
                                      policy=args.policy, mode=args.mode)
    before = evaluate(weight, initial_phy2log(num_layers, num_experts, num_replicas), topology, mode)
    after = evaluate(weight, phy2log, topology, mode)
    print(f"load: {args.input} ({loaded.format}) {loaded.description}")
    print(f"topology: {num_replicas} slots for {num_experts} experts ({num_replicas - num_experts} redundant) "
          f"on {args.gpus} GPUs in {args.nodes} node(s), {args.groups} group(s); mode {mode}; policy {args.policy}")
    print(f"balancedness (vLLM, mean/max GPU load): before {_fmt(before.balancedness)}  "
          f"after {_fmt(after.balancedness)}  bound {_fmt(after.bound_balancedness)}")
    print(f"utilization rate (SGLang, per-layer mean): before {_fmt(before.utilization_rate)}  "
          f"after {_fmt(after.utilization_rate)}")
    print("before = vLLM's initial placement (slot i holds expert i % E); "
          "bound = no placement can do better (from a proven lower bound on the busiest GPU)")
    if args.output:
        fmt = _output_format(args, formats.PLACEMENT_FORMATS)
        _write(args.output, formats.write_placement(fmt, phy2log, topology, mode=mode, policy=args.policy))
        print(f"wrote {args.output}: {formats.PLACEMENT_FORMATS[fmt][0]}, phy2log [{num_layers}, {num_replicas}]")
    return 0


def cmd_convert(args) -> int:
    loaded = formats.read_load_file(args.input)
    fmt = _output_format(args, formats.LOAD_FORMATS)
    data = loaded.trace if loaded.trace is not None and not args.sum else loaded.matrix
    if fmt == "csv" and data.dim() == 3:
        raise UsageError(f"CSV holds one [layers, experts] matrix but {args.input} is a trace of {data.shape[0]} "
                         "steps: add --sum to write the summed load, or write .npy, .pt or .json")
    _write(args.output, formats.write_load(fmt, data))
    print(f"read {args.input} ({loaded.format}) {loaded.description}")
    print(f"wrote {args.output}: {formats.LOAD_FORMATS[fmt][0]}, shape {list(data.shape)}")
    return 0


def _preset(name: str):
    wanted = name.lower().replace(" ", "")
    for key, preset in PRESETS.items():
        if key.lower().replace(" ", "") == wanted:
            return preset
    matches = [p for k, p in PRESETS.items() if k.lower().replace(" ", "").startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several presets" if matches else "is not a preset"
    raise UsageError(f"{name!r} {problem}: choose one of {', '.join(repr(k) for k in PRESETS)}")


def cmd_generate(args) -> int:
    top_k = args.top_k
    if args.preset:
        preset = _preset(args.preset)
        num_layers = args.layers or preset.num_layers
        num_experts = args.experts or preset.num_experts
        top_k = top_k or preset.top_k
    elif args.layers and args.experts:
        num_layers, num_experts = args.layers, args.experts
    else:
        raise UsageError("generate needs --preset NAME, or both --layers and --experts")
    common = dict(seed=args.seed, skew=args.skew, tokens=args.tokens, top_k=top_k or 8)
    if args.steps:
        load = generate_trace(args.family, args.steps, num_layers, num_experts, drift=args.drift, **common)
    else:
        load = generate_load(args.family, num_layers, num_experts, **common)
    fmt = _output_format(args, formats.LOAD_FORMATS)
    if fmt == "csv" and load.dim() == 3:
        raise UsageError("CSV holds one [layers, experts] matrix: drop --steps, or write a trace to .npy, .pt or .json")
    _write(args.output, formats.write_load(fmt, load))
    what = f"trace of {args.steps} steps" if args.steps else "load"
    print(f"wrote {args.output}: {formats.LOAD_FORMATS[fmt][0]}, {args.family} {what} of shape {list(load.shape)} "
          f"(seed {args.seed})")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from . import bench

    return bench.main(argv)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eplb", description="Expert-parallelism load balancing: rebalance, convert and "
                     "generate expert loads; benchmark the policies.")
    sub = parser.add_subparsers(dest="command", metavar="{rebalance,convert,generate,bench}", parser_class=_Parser)

    p = sub.add_parser("rebalance", help="place experts for a load file and report balancedness before and after",
                       description="Read a load (CSV, .npy, JSON, .pt, SGLang or vLLM dump; a trace is summed over "
                       "its steps), place the experts, print balancedness before (vLLM's initial placement) and "
                       "after, and optionally write the placement.",
                       epilog="Output formats: " + _format_list(formats.PLACEMENT_FORMATS))
    p.add_argument("input", help="load file")
    slots = p.add_mutually_exclusive_group()
    slots.add_argument("--replicas", type=_positive_int, help="physical expert slots P (default: experts + redundant)")
    slots.add_argument("--redundant", type=_non_negative_int, default=0, help="redundant slots beyond one per expert")
    p.add_argument("--groups", type=_positive_int, default=1, help="expert groups (DeepSeek-V3: 8); default 1")
    p.add_argument("--nodes", type=_positive_int, default=1, help="server nodes; default 1")
    p.add_argument("--gpus", type=_positive_int, required=True, help="GPUs in the expert-parallel group")
    p.add_argument("--policy", choices=list(POLICIES), default=DEFAULT_POLICY, help=f"default {DEFAULT_POLICY}")
    p.add_argument("--mode", choices=MODES, default="auto", help="default auto (hierarchical when groups divide "
                   "over nodes)")
    p.add_argument("-o", "--output", help="write the placement here; format from the extension")
    p.add_argument("--format", choices=list(formats.PLACEMENT_FORMATS), help="placement format, overriding the extension")
    p.set_defaults(run=cmd_rebalance)

    p = sub.add_parser("convert", help="convert a load file to a plain matrix or trace in another format",
                       description="Read any supported load file and write it as a plain matrix or trace.",
                       epilog="Output formats: " + _format_list(formats.LOAD_FORMATS))
    p.add_argument("input", help="load file")
    p.add_argument("-o", "--output", required=True, help="output file; format from the extension")
    p.add_argument("--format", choices=list(formats.LOAD_FORMATS), help="output format, overriding the extension")
    p.add_argument("--sum", action="store_true", help="write a trace summed over its steps as one matrix")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("generate", help="write a sample load or trace",
                       description="Write a seeded synthetic load [layers, experts], or a trace [steps, layers, "
                       "experts] with --steps, for a model preset or a given shape.",
                       epilog="Presets: " + ", ".join(repr(k) for k in PRESETS) + ". Output formats: "
                       + _format_list(formats.LOAD_FORMATS))
    p.add_argument("-o", "--output", required=True, help="output file; format from the extension")
    p.add_argument("--format", choices=list(formats.LOAD_FORMATS), help="output format, overriding the extension")
    p.add_argument("--preset", help="model preset name (case and spaces ignored; a unique prefix is enough)")
    p.add_argument("--layers", type=_positive_int, help="MoE layers (overrides the preset)")
    p.add_argument("--experts", type=_positive_int, help="routed experts per layer (overrides the preset)")
    p.add_argument("--family", choices=FAMILIES, default="zipf", help="workload family; default zipf")
    p.add_argument("--skew", type=float, help="family's skew (default: the family's own)")
    p.add_argument("--seed", type=int, default=0, help="random seed; default 0")
    p.add_argument("--tokens", type=_positive_int, default=8192, help="routed tokens per step; default 8192")
    p.add_argument("--top-k", type=_positive_int, help="experts per token (default: the preset's, else 8)")
    p.add_argument("--steps", type=_positive_int, help="write a trace of this many steps instead of one matrix")
    p.add_argument("--drift", type=float, default=0.05, help="per-step popularity drift of a trace; default 0.05")
    p.set_defaults(run=cmd_generate)

    sub.add_parser("bench", help="the policy benchmark (options: python -m eplb bench --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 unexpected failure)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["bench"]:
            return cmd_bench(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return USAGE_ERROR
        return args.run(args)
    except SystemExit as exc:  # --help, or a subcommand (bench) that exits
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else USAGE_ERROR)
    except (UsageError, ValueError) as exc:  # FormatError is a ValueError
        print("eplb: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line never shows a traceback
        print(f"eplb: unexpected error ({type(exc).__name__}: {exc}); please report it with the command you ran",
              file=sys.stderr)
        return 1
