"""The Learn page's lesson as data: one ``Step`` per screen. No Streamlit here.

    steps = lesson(explain.LESSONS["readme"], layer=0, policy="deepseek")
    step.title, step.sentences, step.picture, step.chart, step.table

The lesson opens with what EPLB is for, shows the case before rebalancing, walks the
chosen policy's three steps and the result, then shows what every other policy does
differently on the same case. Every step draws the same picture (``figures.gpu_picture``),
and a step that moves copies carries the previous step's picture to replay the move.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial

import plotly.graph_objects as go

import eplb
from eplb import explain
from eplb.explain import Case, Walkthrough
from ui.learn import figures
from ui.learn.figures import OTHER, after_bars, before_bars, placed_scene, waiting_scene


@dataclass(frozen=True)
class Step:
    """One screen of the lesson.

    sentences: short Markdown sentences of project text and the case's numbers (no user text);
    picture: the GPUs and their loads; chart: a second chart or None; table: rows of every
    choice the step made, or None, titled ``table_title``. The figures are drawn when first
    asked for, once: a class mostly looks at one step at a time.
    """

    title: str
    sentences: tuple[str, ...]
    draw_picture: Callable[[], go.Figure] = field(repr=False)
    draw_chart: Callable[[], go.Figure] | None = field(default=None, repr=False)
    table: tuple[dict, ...] | None = None
    table_title: str = ""

    @cached_property
    def picture(self) -> go.Figure:
        return self.draw_picture()

    @cached_property
    def chart(self) -> go.Figure | None:
        return None if self.draw_chart is None else self.draw_chart()


def walkthroughs(case: Case, layer: int) -> dict[str, Walkthrough]:
    """Every registered policy's walkthrough of one layer of the case."""
    return {name: explain.walkthrough(case.tensor, case.topology, layer, name, case.mode) for name in eplb.POLICIES}


def lesson(case: Case, layer: int, policy: str) -> tuple[Step, ...]:
    """The steps of the lesson on ``layer`` of ``case``, walking ``policy``.

    The case must be valid (``explain.case_problem`` is None).
    """
    walks = walkthroughs(case, layer)
    walk = walks[policy]
    t, num_experts = case.topology, case.num_experts

    def picture(scene, previous=None) -> Callable[[], go.Figure]:
        return partial(figures.gpu_picture, scene, t, num_experts, previous=previous)

    top = tuple(int(e) for e in walk.weight.topk(min(case.top_k, num_experts)).indices)
    start = placed_scene(walk, walk.before, [before_bars(walk)])
    grouped = waiting_scene(walk, extras=False)
    replicated = waiting_scene(walk, extras=True)
    packed = placed_scene(walk, walk.phy2log, [after_bars(walk)])
    split_by_node = walk.mode == "hierarchical" and t.num_nodes > 1
    steps = [
        Step("What EPLB is for", tuple(explain.describe_opening(walk, case.top_k)),
             picture(placed_scene(walk, walk.before, [before_bars(walk)], token_to=top))),
        Step("The case, before rebalancing", tuple(explain.describe_case(walk)), picture(start),
             draw_chart=partial(figures.expert_loads, walk)),
        Step("Groups onto nodes", tuple(explain.describe_groups(walk)), picture(grouped, previous=start),
             table=tuple(explain.group_rows(walk)) if split_by_node else None,
             table_title="Every group, in the order it was placed"),
        Step("Extra copies for busy experts", tuple(explain.describe_replication(walk)),
             picture(replicated, previous=grouped), table=tuple(explain.choice_rows(walk)) or None,
             table_title="Every extra copy, in the order it was added"),
        Step("Copies onto GPUs", tuple(explain.describe_packing(walk)), picture(packed, previous=replicated),
             table=tuple(explain.copy_rows(walk)) or None, table_title="Every copy, in the order it was placed"),
        Step("Before and after", tuple(explain.describe_result(walk)),
             picture(placed_scene(walk, walk.phy2log, [before_bars(walk), after_bars(walk)]))),
    ]
    for name, other in walks.items():
        if name == policy:
            continue
        sentences = explain.describe_difference(other, walk)
        if float(other.gpu_load.max()) == float(walk.gpu_load.max()) and case != explain.LESSONS["hot"]:
            sentences.append(f"The lesson \"{explain.LESSONS['hot'].label}\" shows a case where they differ.")
        scene = placed_scene(other, other.phy2log, [after_bars(walk, policy[:8]), after_bars(other, name[:8], OTHER)],
                             framed=explain.differs(other, walk), frame_name="changed")
        default = " (the default)" if name == eplb.DEFAULT_POLICY else ""
        steps.append(Step(f"How {name} differs{default}", tuple(sentences),
                          picture(scene, previous=packed),
                          draw_chart=partial(figures.copies_by_policy, {policy: walk, name: other})))
    return tuple(steps)
