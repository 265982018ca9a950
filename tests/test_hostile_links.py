"""Hostile links, control values and raw widget values, and one session against another.

Every value a link (``?nodes=...``) or a hand-made websocket message can give a sidebar
control either becomes a value the control allows or falls back with a note that shows
the text as typed (escaped Markdown, never a link, an image or KaTeX); nothing raises.
The number of inputs tried is printed at the end of the module (and kept in
test-output/hostile-links-cases.json); the files are tried in test_hostile_input.py.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch
from streamlit.testing.v1 import AppTest

import eplb
from eplb.workloads import generate_load
from tests.conftest import APP, APP_TIMEOUT, ROOT, assert_clean, plain, sidebar_control
from ui import compute, state
from ui.text import MARKDOWN_SPECIAL

CASES: Counter = Counter()
"""Inputs tried, by kind."""

NUMERIC = tuple(state.LIMITS)
CATEGORICAL = tuple(name for name in state.DEFAULTS if name not in state.LIMITS)


@pytest.fixture(scope="module", autouse=True)
def count_cases(request):
    """At the end of the module: print how many inputs were tried, and keep the tally."""
    yield
    total = sum(CASES.values())
    line = f"hostile links and controls: {total} inputs tried (" + \
        ", ".join(f"{kind} {n}" for kind, n in sorted(CASES.items())) + ")"
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n" + line)
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    (out / "hostile-links-cases.json").write_text(json.dumps({"total": total, "by_kind": dict(CASES)}, indent=2))


def escaped(markdown: str) -> bool:
    """Every Markdown-special character in the text is backslash-escaped (what ``ui.text.escape`` makes)."""
    i = 0
    while i < len(markdown):
        if markdown[i] == "\\":
            i += 2
            continue
        if markdown[i] in MARKDOWN_SPECIAL:
            return False
        i += 1
    return True


def allowed(name: str, value) -> bool:
    """A value the control takes: one of its choices, or a number of its type in its range."""
    if name in CATEGORICAL:
        return value in state._choices(name)
    low, high = state.LIMITS[name]
    kind = int if isinstance(state.DEFAULTS[name], int) else float
    return type(value) is kind and math.isfinite(value) and low <= value <= high


def check_link(name: str, raw: str, kind: str) -> tuple[object, str | None]:
    """``state.link_value`` on one link value: an allowed value, and an escaped note when it is not the link's."""
    CASES[kind] += 1
    value, note = state.link_value(name, raw)
    assert allowed(name, value), (name, raw, value)
    if note is None:
        if name in CATEGORICAL:
            assert value == raw
        else:
            assert value == float(raw) and re.fullmatch(r"[+\-0-9.eE]+", raw), (name, raw, value)
    else:
        assert value == state.DEFAULTS[name], (name, raw, value)
        assert escaped(note) and "\n" not in note and len(note) < 800, note
        assert name in plain(note)
    return value, note


# ---------------------------------------------------------------- the reported repros, one test each

HUGE = "9" * 100_000
LINK_REPROS = {
    "nodes=inf": ("nodes", "inf"), "nodes=-inf": ("nodes", "-inf"), "nodes=1e400": ("nodes", "1e400"),
    "nodes=100000-digits": ("nodes", HUGE), "redundant=inf": ("redundant", "inf"), "seed=inf": ("seed", "inf"),
    "nodes=2.5": ("nodes", "2.5"), "nodes=1_0": ("nodes", "1_0"), "skew=nan": ("skew", "nan"),
    "skew=1e400": ("skew", "1e400"), "redundant=4097": ("redundant", "4097"),
    "sample=image": ("sample", "![x](http://127.0.0.1:8799/a.png)"),
    "mode=link": ("mode", "[Download the fixed placement](http://127.0.0.1:8799/)"),
}


@pytest.mark.parametrize("name, raw", LINK_REPROS.values(), ids=LINK_REPROS.keys())
def test_link_repro_falls_back_with_an_escaped_note(name, raw):
    value, note = check_link(name, raw, "link repro")
    assert value == state.DEFAULTS[name] and note
    assert "](" not in note.replace("\\](", "") and "![" not in note.replace("\\!\\[", "")
    if name == "nodes" and raw in ("2.5", "1_0"):
        assert "whole number" in plain(note)  # refused, never truncated to 2 or read as 10


def test_good_link_values_are_taken_as_written():
    for name, raw, expected in [("nodes", "2", 2), ("redundant", "0", 0), ("redundant", "4096", 4096),
                                ("skew", "1.5", 1.5), ("skew", "2e3", 2000.0), ("seed", "2147483647", 2**31 - 1),
                                ("mode", "global", "global"), ("policy", "deepseek", "deepseek")]:
        assert check_link(name, raw, "link good") == (expected, None)


def test_a_link_with_every_repro_opens_cleanly_with_escaped_notes():
    """One AppTest session opened from a link carrying the repros at once; then a generator link with seed=inf."""
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    at.query_params.update({"nodes": "inf", "redundant": "1e400", "gpus_per_node": HUGE, "groups": "2.5",
                            "sample": "![x](http://127.0.0.1:8799/a.png)",
                            "mode": "[Download the fixed placement](http://127.0.0.1:8799/)", "policy": "1_0"})
    at.run()
    CASES["link in the app"] += 7
    assert_clean(at)
    notes = [i.value for i in at.info]
    assert len([n for n in notes if n.startswith("The link")]) == 7, notes
    assert all(escaped(n) for n in notes), notes
    assert not any("![x](" in n or "](http" in n for n in notes)
    assert [m.label for m in at.metric][:1] == ["Balancedness before (vLLM)"]  # the defaults drew
    gen = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    gen.query_params.update({"data": "generate", "seed": "inf", "skew": "-inf", "preset": "Mixtral 8x7B"})
    gen.run()
    CASES["link in the app"] += 3
    assert_clean(gen)
    assert sum(plain(i.value).startswith("The link's s") for i in gen.info) == 2
    assert sidebar_control(gen, "seed").value == 0


# ---------------------------------------------------------------- the corpus: thousands of link values

HOSTILE = ["inf", "-inf", "+inf", "Infinity", "nan", "NaN", "-nan", "1e400", "-1e400", "1e-400", "1e309", "0x10",
           "0o7", "0b1", "1_0", "1_000", " 4", "4 ", "\t4", "4\n", "٤", "４", "²", "Ⅳ", "4.", ".5", "2.5", "4.0",
           "-0", "+4", "--4", "4e0", "4E1", "1e2", "", " ", "null", "None", "true", "[]", "{}", "4,5", "4;5",
           "4/1", "1/0", "%34", "&#52;", "\x00", "4\x00", "ⅰ", "৪", "𝟒", HUGE[:5000], "1" + "0" * 400,
           "-" + "9" * 30, "$x^2$", "**URGENT**", "<img src=x onerror=alert(1)>", ":red[x]", ":material/home:",
           "![x](http://127.0.0.1/a.png)", "[a](javascript:alert(1))", "`code`", "\\", "\\\\", "'", '"', "\u202e4",
           "4" * 13, "9" * 12, "2147483648", "-2147483649", "1e6", "1000000.0001", "1e-7", "0.1e1", "1.e3"]


def _random_values(rng: random.Random, count: int) -> list[str]:
    alphabet = "0123456789+-.eE_ xXinfaINFA#%&()[]!*$^`\\:'\"٤４\u202e\x00"
    values = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3:
            values.append(str(rng.randint(-10**6, 10**7)))
        elif kind < 0.5:
            values.append(repr(rng.uniform(-1e7, 1e7) * rng.choice([1, 1e-300, 1e300])))
        else:
            values.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))))
    return values


def test_thousands_of_link_values_for_every_control_become_allowed_values_or_escaped_notes():
    rng = random.Random(17)
    names = list(state.DEFAULTS)
    choices = [c for name in CATEGORICAL for c in state._choices(name)]
    for name in names:
        for raw in HOSTILE + choices:
            check_link(name, raw, "link hand-made")
        for raw in _random_values(rng, 700):
            check_link(name, raw, "link random")


def _raw_values(rng: random.Random, count: int) -> list:
    fixed = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 2.5, 1.0000000001, True, False, None,
             "3", b"3", [3], {"a": 1}, 10**30, -(10**30), 2**31, 2**31 - 1, 4096, 4097, 512, 513, 64, 65]
    return fixed + [rng.choice([rng.uniform(-1e4, 1e4), rng.randint(-10, 10**5), rng.random() * 10 ** rng.randint(
        -5, 300)]) for _ in range(count)]


def test_raw_widget_values_are_taken_only_when_the_control_allows_them():
    rng = random.Random(13)
    for name in NUMERIC:
        for raw in _raw_values(rng, 400):
            CASES["raw widget value"] += 1
            value = state.control_value(name, raw)
            if value is not None:
                assert allowed(name, value), (name, raw, value)
                assert value == raw
            else:
                low, high = state.LIMITS[name]
                ok = isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw) and \
                    low <= raw <= high and (not isinstance(state.DEFAULTS[name], int) or float(raw).is_integer())
                assert not ok, (name, raw)


@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf, 2.5, 10**9, "32; DROP", [1, 2]],
                         ids=["nan", "inf", "-inf", "2.5", "1e9", "text", "list"])
def test_raw_widget_value_for_redundant_slots_never_raises(raw):
    """The topology controls are sliders over the values that fit: a raw value a hand-made websocket message
    sends that is not one of the slider's options is replaced by one of them (Streamlit's select_slider falls
    back to an offered option), never raises and never reaches the balancer."""
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT).run()
    at.session_state["eplb_redundant"] = raw  # as a hand-made websocket message sends it
    at.run()
    CASES["raw widget value in the app"] += 1
    assert_clean(at)
    slider = sidebar_control(at, "redundant")
    assert slider.value in slider.options or str(slider.value) in slider.options, (slider.value, slider.options[:5])
    assert state.control_value("redundant", slider.value) == slider.value and slider.value != raw
    assert any(m.label == "Balancedness after (vLLM)" for m in at.metric)


@pytest.mark.parametrize("raw", [math.nan, math.inf, 2.5, 10**12])
def test_raw_widget_value_for_the_seed_is_refused_with_a_note(raw):
    """The seed is a number input: a fraction or a value out of range puts the last good value back with a note
    (never truncated); NaN, inf and out-of-range values Streamlit resets to the input's default before the page runs."""
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    at.query_params.update({"data": "generate", "preset": "Mixtral 8x7B", "seed": "7"})
    at.run()
    at.session_state["eplb_seed"] = raw
    at.run()
    CASES["raw widget value in the app"] += 1
    assert_clean(at)
    assert state.control_value("seed", at.session_state["eplb_seed"]) == at.session_state["eplb_seed"]
    if raw == 2.5:
        assert at.session_state["eplb_seed"] == 7
        assert any(f"seed = {raw}" in plain(i.value) and "back to 7" in plain(i.value) for i in at.info), \
            [i.value for i in at.info]


# ---------------------------------------------------------------- one session cannot break another


def test_a_session_flooding_the_registry_never_evicts_another_sessions_matrix():
    """Session A shows the sample; session B loads 70 generated loads (on a topology they do not fit, so B's
    reruns stay cheap); A's matrix stays, and A keeps rendering."""
    a = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT).run()
    assert_clean(a)
    digest = next(d for d in compute._HELD if compute._live(d) is not None and compute.lookup(d).shape == (58, 256))
    b = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    b.query_params.update({"data": "generate", "preset": "Mixtral 8x7B", "nodes": "1", "gpus_per_node": "8",
                           "redundant": "1", "groups": "1"})
    b.run()
    for seed in range(1, 71):  # more than the 64 entries the shared registry once kept
        sidebar_control(b, "seed").set_value(seed)
        b.run()
    CASES["session flood"] += 70
    assert_clean(b)
    assert compute.lookup(digest).shape == (58, 256)  # still there, though no rerun of A registered it again
    sidebar_control(a, "redundant").set_value(96)  # a topology A has not seen: computed from the registry
    a.run()
    assert_clean(a)
    assert not a.error and any(m.label == "Balancedness after (vLLM)" for m in a.metric)


def test_registry_holds_a_matrix_exactly_while_someone_holds_it():
    held = torch.arange(12.0).reshape(3, 4)
    digest = compute.register(held)
    for i in range(compute.RECENT + 3):
        compute.register(torch.full((2, 2), float(i)))  # pushes it out of the few kept without a holder
    assert compute.lookup(digest) is held
    del held
    with pytest.raises(KeyError):
        compute.lookup(digest)


def test_one_result_asked_for_by_many_at_once_is_computed_once():
    import threading

    cache, calls, barrier = compute.ByteCache(2**20), [], threading.Barrier(8)

    def slow():
        calls.append(1)
        return torch.zeros(16)

    def ask():
        barrier.wait()
        cache.get(("k",), slow)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_the_result_cache_is_bounded_in_bytes_not_entries():
    cache = compute.ByteCache(10_000)
    for i in range(50):
        cache.get((i,), lambda: torch.zeros(500))  # 2,000 bytes each
    assert cache.held <= 10_000 and len(cache._entries) == 5


# ---------------------------------------------------------------- the memory budget


def test_redundant_4096_link_caches_no_log2phy():
    """/?nodes=1&gpus_per_node=1&groups=1&redundant=4096, then 4095 and 4094: once 0.5 GB per topology."""
    compute.CACHE.clear()
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT * 3)
    at.query_params.update({"nodes": "1", "gpus_per_node": "1", "groups": "1", "redundant": "4096"})
    at.run()
    for redundant in (4095, 4094):
        sidebar_control(at, "redundant").set_value(redundant)
        at.run()
    CASES["memory repro"] += 3
    assert_clean(at)
    assert not at.error
    assert "log2phy" not in {f for f in compute.Placement.__dataclass_fields__}
    # three placements and their baselines of 58 x 4350 slots: a few MB each, not 0.5 GB
    assert compute.CACHE.held < 64 * 2**20, compute.CACHE.held


def test_a_topology_over_the_slot_budget_is_explained_with_the_limit(monkeypatch):
    monkeypatch.setattr(state, "MAX_SLOT_LAYERS", 58 * 288 - 1)  # the default sample's topology, one over
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT).run()
    CASES["memory repro"] += 1
    assert_clean(at)
    problem = plain(" ".join(e.value for e in at.error))
    assert "58 layers x 288 slots make 16,704 slot-layers; this server balances at most 16,703" in problem
    assert "use at most 31 redundant slots" in problem
    assert not at.get("plotly_chart")  # nothing was computed: no last valid setting to show


def test_max_redundant_follows_the_slot_budget():
    assert state.MAX_SLOT_LAYERS == 2**20 and state.MAX_SLOTS == 2**15
    assert state.max_redundant(58, 256) == 4096  # DeepSeek-V3 and Kimi K2 keep the whole range
    assert state.max_redundant(60, 384) == 4096
    assert state.max_redundant(1, 20000) == 4096
    assert state.max_redundant(1024, 256) == 2**20 // 1024 - 256 == 768
    assert state.max_redundant(1, 2**15) == 0 and state.max_redundant(1, 2**15 + 1) < 0
    state.too_large(58, 256, 256 + 4096)
    with pytest.raises(ValueError, match="balance it with the command line"):
        state.too_large(64, 2**15, 2**15)
    with pytest.raises(ValueError, match="use at most 768 redundant slots"):
        state.too_large(1024, 256, 256 + 1024)


def test_sweep_range_is_bounded_by_what_the_server_can_hold():
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT).run()
    at.switch_page("pages/sweep.py").run()
    CASES["control bound"] += 1
    assert_clean(at)
    top = next(w for w in at.number_input if w.label == "Up to (redundant slots)")
    assert top.max == state.max_redundant(58, 256) == 4096
    assert "4096" in top.help and "slot-layers" in top.help


def test_lognormal_generator_at_huge_skew_gives_one_hot_expert_not_zeros():
    for skew in (400.0, 1e4, 1e6):
        CASES["generator repro"] += 1
        load = generate_load("lognormal", 4, 32, skew=skew)
        assert torch.isfinite(load).all() and (load.sum(-1) > 0).all(), skew


_PEAK = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch
from ui import compute, state
import eplb
from eplb.workloads import generate_load
compute.CACHE.budget = 0  # one computation at a time, nothing kept
def rss(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) * 1024
out = []
for layers, experts, redundant, gpus, nodes, groups in {shapes!r}:
    weight = (torch.rand(layers, experts, generator=torch.Generator().manual_seed(0)) * 1000).round()
    weight[:, :3] *= 50
    digest = compute.register(weight)
    topology = eplb.Topology(experts + redundant, groups, nodes, gpus)
    assert layers * topology.num_replicas <= state.MAX_SLOT_LAYERS
    for policy in eplb.POLICIES:
        open("/proc/self/clear_refs", "w").write("5")
        base, start = rss("VmRSS"), time.perf_counter()
        compute.placement(digest, topology, "auto", policy)
        out.append({{"shape": [layers, experts, redundant, gpus], "policy": policy,
                    "seconds": round(time.perf_counter() - start, 1), "peak": rss("VmHWM") - base}})
print(json.dumps(out))
"""


def test_one_rebalance_at_the_slot_budget_stays_within_the_documented_peak():
    """Every policy at the largest topology the sidebar allows on one load shape: the peak memory one rebalance
    (with its bound, its baseline and its report) takes stays under ``state.MAX_SLOT_LAYERS`` x 1 KiB, the
    figure docs/robustness.md builds the server's worst case from. The shape is the costliest found for
    ``joint`` (many redundant slots per expert): 240 layers x 4352 slots, DeepSeek-V3's 256 experts."""
    budget = state.MAX_SLOT_LAYERS
    shapes = [(budget // (256 + 4096), 256, 4096, 64, 8, 8)]
    code = _PEAK.format(root=str(ROOT), shapes=shapes)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    CASES["memory budget"] += len(found)
    print("\none rebalance at the slot budget: " + ", ".join(
        f"{r['policy']} {r['peak'] / 2**20:.0f} MiB in {r['seconds']} s" for r in found))
    for result in found:
        assert result["peak"] < budget * 1024, result


def test_figures_are_built_once_per_content_and_bounded_in_bytes():
    from ui import figures

    calls = []

    class Builders:
        __name__ = "builders"

        @staticmethod
        def bars(loads, *, title):
            calls.append(title)
            return figures.gpu_load_bars(loads, title=title)

        @staticmethod
        def format_ratio(value):
            return f"{value:.3f}"

    cached = compute.CachedFigures(Builders())
    loads = {"before": torch.tensor([3.0, 1.0]), "after": torch.tensor([2.0, 2.0])}
    first = cached.bars(loads, title="t")
    assert cached.bars({k: v.clone() for k, v in loads.items()}, title="t") is first  # equal content, one build
    cached.bars({"before": torch.tensor([3.0, 1.5]), "after": loads["after"]}, title="t")
    cached.bars(loads, title="other")
    assert calls == ["t", "t", "other"]
    assert cached.format_ratio(0.5) == "0.500"
    assert compute.FIGURES.held <= compute.FIGURE_BYTES


def test_the_documented_worst_case_follows_the_limits():
    """docs/robustness.md's steady-state worst case, recomputed from the limits it is made of."""
    from eplb.formats.safe import MAX_ELEMENTS

    gib = 2**30
    process = 0.55 * gib  # measured: the eight-session test's peak with every page loaded
    rebalance = state.MAX_SLOT_LAYERS * 1024  # the peak the slot-budget test holds
    fixed = process + compute.CACHE_BYTES + compute.FIGURE_BYTES + compute.CONCURRENT * rebalance
    per_session = 3 * MAX_ELEMENTS * 4  # a load, a trace with it and a Replay trace, float32
    assert round(fixed / gib, 1) == 3.1 and round(per_session / gib, 2) == 0.19
    assert round((fixed + 30 * per_session) / gib, 1) == 8.7
    doc = (ROOT / "docs" / "robustness.md").read_text()
    assert "about **3.1 GiB + 0.19 GiB per session** (8.7 GiB for 30 sessions" in doc


def test_place_experts_is_rebalance_experts_without_the_reverse_map():
    weight = torch.tensor([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                           [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]])
    for policy in eplb.POLICIES:
        for mode in ("hierarchical", "global"):
            phy2log, _, _ = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy=policy, mode=mode)
            assert torch.equal(eplb.place_experts(weight, 16, 4, 2, 8, policy=policy, mode=mode), phy2log)


def test_replay_over_the_slot_budget_is_refused_with_the_limit():
    from ui import analysis_compute

    trace = torch.ones(2, 1024, 256)
    digest = compute.register(trace)
    with pytest.raises(ValueError, match="1024 layers x 1280 slots make 1,310,720 slot-layers"):
        analysis_compute.replay(digest, eplb.Topology(1280, 1, 1, 8), window=1, interval=1, threshold=None,
                                policy="zigzag", mode="auto", expert_bytes=0)


def test_file_names_keys_and_cells_show_as_typed_in_the_summary_and_messages():
    """`**URGENT** $x^2$.csv` and friends once rendered as Markdown or KaTeX in the summary line and in messages."""
    name = "**URGENT** $x^2$ ![x](http://127.0.0.1:8799/a.png).csv"
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    at.query_params.update({"data": "upload", "nodes": "1", "gpus_per_node": "4", "redundant": "4", "groups": "1"})
    at.run()
    uploader = at.file_uploader(key="eplb_upload")
    uploader.set_value((name, b"1,2,3,4,5,6,7,8\n8,7,6,5,4,3,2,1\n", "text/csv")).run()
    CASES["markdown in a file"] += 1
    assert_clean(at)
    summary = next(m.value for m in at.markdown if " layers x " in m.value)
    assert f"upload: {name}" in plain(summary)
    assert escaped(summary.split(" · ")[0].removeprefix("**")), summary  # the label: every special escaped
    keyed = "[link](http://127.0.0.1:8799/) $x$.json"
    at.file_uploader(key="eplb_upload").set_value(
        (keyed, b'{"**key** $x^2$": [[1, 2, 3, 4, 5, 6, 7, 8]]}', "application/json")).run()
    CASES["markdown in a file"] += 1
    assert_clean(at)
    summary = next(m.value for m in at.markdown if " layers x " in m.value)
    assert keyed in plain(summary) and "**key** $x^2$" in plain(summary)
    assert escaped(summary.split(" · ")[0].removeprefix("**")), summary
    bad = {"cells **x**.csv": b"1,2\n3,**bold** $x^2$ ![i](http://127.0.0.1:8799/a.png)\n"}
    for bad_name, content in bad.items():
        at.file_uploader(key="eplb_upload").set_value((bad_name, content, "text/csv")).run()
        CASES["markdown in a file"] += 1
        assert_clean(at)
        errors = [e.value for e in at.error if "Could not use" in plain(e.value)]
        assert errors and all(escaped(e) for e in errors), errors
        assert bad_name in plain(errors[0]) and "![i](" in plain(errors[0])


def test_a_client_sending_bad_values_forever_keeps_a_bounded_list_of_notes():
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT).run()
    for fraction in range(40):
        at.session_state["eplb_seed"] = 2.5 + fraction  # each a fraction the page refuses
        at.run()
    CASES["raw widget value in the app"] += 40
    assert_clean(at)
    notes = [i.value for i in at.info]
    assert len(notes) <= state.MAX_NOTES and "41\\.5" in notes[-1], notes[-3:]
