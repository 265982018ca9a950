"""``eplb`` (or ``python -m eplb``): rebalance a load, convert between formats, generate samples, run the benchmark.

Every subcommand has ``--help``. Bad input exits with code 2 and one line on
stderr naming what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import math
import sys

from . import formats
from .metrics import evaluate, initial_phy2log
from .policies import DEFAULT_POLICY, POLICIES
from .presets import PRESETS, ModelNeeded, ModelPreset, custom_model, find_preset
from .rebalance import MODES, Topology, rebalance_experts
from .workloads import FAMILIES, generate_load, generate_trace

USAGE_ERROR = 2

MAX_TABLE = 2**26
"""Most values of one table the command line builds: log2phy [layers, experts, slots - experts + 1], a trace."""

MAX_TOKENS = 2**40
"""Most routed tokens x top-k per step a generated load may have."""


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line instead of the usage block."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _whole(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text if len(text) < 30 else text[:27] + '...'} must be between "
                                         f"{low} and {high:,}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1, 2**31 - 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0, 2**31 - 1)


def _seed(text: str) -> int:
    return _whole(text, 0, 2**63 - 1)


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _format_list(table: dict[str, formats.Writer]) -> str:
    return "; ".join(f"{key} ({writer.extension}): {writer.label}" for key, writer in table.items())


def _output_format(args, table: dict[str, formats.Writer]) -> str:
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


def _named_model(args, num_rows: int, num_experts: int) -> ModelPreset | None:
    """The model named by --model, or by --dense-layers K for one without a preset (the rows are its MoE layers)."""
    if getattr(args, "model", None):
        try:
            return find_preset(args.model)
        except ValueError as exc:
            raise UsageError(f"--model: {exc}") from None
    if args.dense_layers is not None:
        return custom_model(num_rows, num_experts, args.dense_layers)
    return None


def _layer_model(args, writer: formats.Writer, num_rows: int, num_experts: int) -> ModelPreset | None:
    """The model the writer's layer rule uses; said on stdout when it came from the shape."""
    model = _named_model(args, num_rows, num_experts)
    try:
        found = formats.layer_rule(writer, num_rows, num_experts, model)
    except ModelNeeded as exc:
        raise UsageError(f"{exc}: --model NAME (one of {', '.join(repr(k) for k in PRESETS)}), or --dense-layers K "
                         "for a model without a preset, whose first K decoder layers are dense (0 when every decoder "
                         "layer is MoE)") from None
    if found is not None and model is None:
        print(f"model: {found.name} ({found.describe_layers()}), told from the shape; --model to name another")
    return found


def _rows_written(writer: formats.Writer, num_rows: int, model: ModelPreset | None) -> int:
    """Rows a writer writes for a table of ``num_rows`` rows: the layer rule's."""
    return {"decoder": model.num_decoder_layers, "moe": model.num_layers}[writer.layers] if model and \
        writer.layers != "any" else num_rows


def _read(args) -> formats.LoadData:
    return formats.read_load_files(args.input)


def _inputs(args) -> str:
    return args.input[0] if len(args.input) == 1 else f"{args.input[0]} and {len(args.input) - 1} more"


# ---------------------------------------------------------------- subcommands


def cmd_rebalance(args) -> int:
    loaded = _read(args)
    weight = loaded.matrix
    num_layers, num_experts = weight.shape
    num_replicas = args.replicas if args.replicas is not None else num_experts + args.redundant
    table = num_layers * num_experts * max(num_replicas - num_experts + 1, 1)
    if table > MAX_TABLE:
        raise UsageError(f"{num_replicas:,} slots for {num_experts} experts would make log2phy [{num_layers}, "
                         f"{num_experts}, {num_replicas - num_experts + 1:,}] ({table:,} values), above the limit of "
                         f"{MAX_TABLE:,}: use fewer slots")
    topology = Topology(num_replicas, args.groups, args.nodes, args.gpus)
    mode = topology.validate(num_experts, args.mode)
    fmt = _output_format(args, formats.PLACEMENT_FORMATS) if args.output else None
    model = _layer_model(args, formats.PLACEMENT_FORMATS[fmt], num_layers, num_experts) if fmt else None
    phy2log, _, _ = rebalance_experts(weight, num_replicas, args.groups, args.nodes, args.gpus,
                                      policy=args.policy, mode=args.mode)
    data = formats.write_placement(fmt, phy2log, topology, mode=mode, policy=args.policy, model=model) if fmt else b""
    before = evaluate(weight, initial_phy2log(num_layers, num_experts, num_replicas), topology, mode)
    after = evaluate(weight, phy2log, topology, mode)
    print(f"load: {_inputs(args)} ({loaded.format}) {loaded.description}")
    print(f"topology: {num_replicas} slots for {num_experts} experts ({num_replicas - num_experts} redundant) "
          f"on {args.gpus} GPUs in {args.nodes} node(s), {args.groups} group(s); mode {mode}; policy {args.policy}")
    print(f"balancedness (vLLM, mean/max GPU load): before {_fmt(before.balancedness)}  "
          f"after {_fmt(after.balancedness)}  bound {_fmt(after.bound_balancedness)}")
    print(f"utilization rate (SGLang, per-layer mean): before {_fmt(before.utilization_rate)}  "
          f"after {_fmt(after.utilization_rate)}")
    print("before = vLLM's initial placement (slot i holds expert i % E); "
          "bound = no placement can do better (from a proven lower bound on the busiest GPU)")
    if fmt:
        _write(args.output, data)
        rows = _rows_written(formats.PLACEMENT_FORMATS[fmt], num_layers, model)
        print(f"wrote {args.output}: {formats.PLACEMENT_FORMATS[fmt].label}, {rows} rows x {num_replicas} slots")
    return 0


def cmd_convert(args) -> int:
    loaded = _read(args)
    fmt = _output_format(args, formats.LOAD_FORMATS)
    data = loaded.trace if loaded.trace is not None and not args.sum else loaded.matrix
    if fmt == "csv" and data.dim() == 3:
        raise UsageError(f"CSV holds one [layers, experts] matrix but {_inputs(args)} is a trace of {data.shape[0]} "
                         "steps: add --sum to write the summed load, or write .npy, .pt or .json")
    model = _layer_model(args, formats.LOAD_FORMATS[fmt], data.shape[-2], data.shape[-1])
    _write(args.output, formats.write_load(fmt, data, model=model))
    print(f"read {_inputs(args)} ({loaded.format}) {loaded.description}")
    shape = [*data.shape[:-2], _rows_written(formats.LOAD_FORMATS[fmt], data.shape[-2], model), data.shape[-1]]
    print(f"wrote {args.output}: {formats.LOAD_FORMATS[fmt].label}, shape {shape}")
    return 0


def cmd_generate(args) -> int:
    if args.preset and args.preset_name and find_preset(args.preset) != find_preset(args.preset_name):
        raise UsageError(f"two presets given: {args.preset_name!r} and --preset {args.preset!r}")
    name = args.preset or args.preset_name
    top_k = args.top_k
    preset = None
    if name:
        try:
            preset = find_preset(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        num_layers = args.layers or preset.num_layers
        num_experts = args.experts or preset.num_experts
        top_k = top_k or preset.top_k
    elif args.layers and args.experts:
        num_layers, num_experts = args.layers, args.experts
    else:
        raise UsageError("generate needs a model preset (generate NAME or --preset NAME), or both --layers and "
                         "--experts")
    size = (args.steps or 1) * num_layers * num_experts
    if size > MAX_TABLE:
        shape = ([args.steps] if args.steps else []) + [num_layers, num_experts]
        raise UsageError(f"a load of shape {shape} would hold {size:,} values, above the limit of {MAX_TABLE:,}: "
                         "use fewer steps, layers or experts")
    top_k = top_k or 8
    if args.tokens * top_k > MAX_TOKENS:
        raise UsageError(f"--tokens {args.tokens:,} x top-k {top_k} is above the limit of {MAX_TOKENS:,} routed "
                         "tokens per step")
    common = dict(seed=args.seed, skew=args.skew, tokens=args.tokens, top_k=top_k)
    if args.steps:
        load = generate_trace(args.family, args.steps, num_layers, num_experts, drift=args.drift, **common)
    else:
        load = generate_load(args.family, num_layers, num_experts, **common)
    if not bool(load.sum(-1).gt(0).all()):
        raise UsageError(f"the {args.family} draw overflowed with these parameters (a layer got no tokens): use a "
                         "smaller --skew" + (" or --drift" if args.steps else ""))
    fmt = _output_format(args, formats.LOAD_FORMATS)
    if fmt == "csv" and load.dim() == 3:
        raise UsageError("CSV holds one [layers, experts] matrix: drop --steps, or write a trace to .npy, .pt or .json")
    model = preset if preset is not None and (num_layers, num_experts) == (preset.num_layers, preset.num_experts) \
        else _layer_model(args, formats.LOAD_FORMATS[fmt], num_layers, num_experts)
    _write(args.output, formats.write_load(fmt, load, model=model))
    what = f"trace of {args.steps} steps" if args.steps else "load"
    shape = [*load.shape[:-2], _rows_written(formats.LOAD_FORMATS[fmt], num_layers, model), num_experts]
    print(f"wrote {args.output}: {formats.LOAD_FORMATS[fmt].label}, {args.family} {what} of shape {shape} "
          f"(seed {args.seed})")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from . import bench

    return bench.main(argv)


# ---------------------------------------------------------------- parser


def _model_options(p) -> None:
    p.add_argument("--model", help="the model, for formats with one row per decoder layer (SGLang) or keyed by "
                   "layer (TensorRT-LLM): a preset name, case and spaces ignored; default: told from the shape")
    p.add_argument("--dense-layers", type=_non_negative_int, metavar="K",
                   help="for a model without a preset: its first K decoder layers are dense (0: every layer is MoE)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eplb", description="Expert-parallelism load balancing: rebalance, convert and "
                     "generate expert loads; benchmark the policies.")
    sub = parser.add_subparsers(dest="command", metavar="{rebalance,convert,generate,bench}", parser_class=_Parser)

    p = sub.add_parser("rebalance", help="place experts for a load and report balancedness before and after",
                       description="Read a load (CSV, .npy, JSON, .pt, an SGLang dump or TensorRT-LLM statistics: "
                       "every rank file, or their folder; a trace is summed over its steps), place the experts, "
                       "print balancedness before (vLLM's initial placement) and after, and optionally write the "
                       "placement.",
                       epilog="Output formats: " + _format_list(formats.PLACEMENT_FORMATS))
    p.add_argument("input", nargs="+", help="load file(s): one file, an engine's rank files, or their folder")
    slots = p.add_mutually_exclusive_group()
    slots.add_argument("--replicas", type=_positive_int, help="physical expert slots P (default: experts + redundant)")
    slots.add_argument("--redundant", type=_non_negative_int, default=0, help="redundant slots beyond one per expert")
    p.add_argument("--groups", type=_positive_int, default=1, help="expert groups (DeepSeek-V3: 8); default 1")
    p.add_argument("--nodes", type=_positive_int, default=1, help="server nodes; default 1")
    p.add_argument("--gpus", type=_positive_int, required=True, help="GPUs in the expert-parallel group")
    p.add_argument("--policy", choices=list(POLICIES), default=DEFAULT_POLICY, help=f"default {DEFAULT_POLICY}")
    p.add_argument("--mode", choices=MODES, default="auto", help="default auto (hierarchical when groups divide "
                   "over nodes)")
    p.add_argument("-o", "--output", help="write the placement here; format from --format or an unambiguous "
                   "extension (.pt SGLang, .yaml TensorRT-LLM, .csv phy2log)")
    p.add_argument("--format", choices=list(formats.PLACEMENT_FORMATS), help="placement format")
    _model_options(p)
    p.set_defaults(run=cmd_rebalance)

    p = sub.add_parser("convert", help="convert a load to a plain matrix or trace, or an engine's load file",
                       description="Read any supported load (one file, an engine's rank files, or their folder) "
                       "and write it in another format.",
                       epilog="Output formats: " + _format_list(formats.LOAD_FORMATS))
    p.add_argument("input", nargs="+", help="load file(s)")
    p.add_argument("-o", "--output", required=True, help="output file; format from --format or an unambiguous "
                   "extension (.csv, .npy, .pt)")
    p.add_argument("--format", choices=list(formats.LOAD_FORMATS), help="output format")
    p.add_argument("--sum", action="store_true", help="write a trace summed over its steps as one matrix")
    _model_options(p)
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("generate", help="write a sample load or trace",
                       description="Write a seeded synthetic load [layers, experts], or a trace [steps, layers, "
                       "experts] with --steps, for a model preset or a given shape.",
                       epilog="Presets: " + ", ".join(repr(k) for k in PRESETS) + ". Output formats: "
                       + _format_list(formats.LOAD_FORMATS))
    p.add_argument("preset_name", nargs="?", metavar="PRESET",
                   help="model preset name (case and spaces ignored; a unique prefix is enough)")
    p.add_argument("-o", "--output", required=True, help="output file; format from --format or an unambiguous "
                   "extension (.csv, .npy, .pt)")
    p.add_argument("--format", choices=list(formats.LOAD_FORMATS), help="output format")
    p.add_argument("--preset", help="the model preset, as PRESET")
    p.add_argument("--layers", type=_positive_int, help="MoE layers (overrides the preset)")
    p.add_argument("--experts", type=_positive_int, help="routed experts per layer (overrides the preset)")
    p.add_argument("--family", choices=FAMILIES, default="zipf", help="workload family; default zipf")
    p.add_argument("--skew", type=_finite, help="family's skew (default: the family's own)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed; default 0")
    p.add_argument("--tokens", type=_positive_int, default=8192, help="routed tokens per step; default 8192")
    p.add_argument("--top-k", type=_positive_int, help="experts per token (default: the preset's, else 8)")
    p.add_argument("--steps", type=_positive_int, help="write a trace of this many steps instead of one matrix")
    p.add_argument("--drift", type=_finite, default=0.05, help="per-step popularity drift of a trace; default 0.05")
    p.add_argument("--dense-layers", type=_non_negative_int, metavar="K",
                   help="for SGLang's logical_count without a preset: the model's first K decoder layers are dense")
    p.set_defaults(run=cmd_generate)

    sub.add_parser("bench", help="the policy benchmark (options: eplb bench --help)", add_help=False)
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
