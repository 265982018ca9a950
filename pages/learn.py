"""Learn: one rebalance of one layer, step by step, for a class following on a projector."""

import streamlit as st

from ui.learn import page as learn

heading = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
heading.title("Learn EPLB", width="content")
learn.receive_taught_layer()
lesson_area = st.container()  # filled below, once the case's controls have said what to draw

with st.expander("Change the case: lesson, layer, policy, topology, loads", icon=":material/tune:"):
    choice = learn.case_controls()

heading.subheader(learn.heading(choice))
with lesson_area:
    if choice.case.note:
        st.caption(choice.case.note)
    if choice.problem:
        st.warning("Your last change does not make a valid case (see \"Change the case\" below), "
                   "so the lesson shows the last case that ran.", icon="⚠️")
    step = learn.navigation(learn.lesson_of(choice.case, choice.layer, choice.policy))
    picture_and_words = st.container(horizontal=True, gap="small")  # the words go under the picture when narrow
    picture_and_words.plotly_chart(step.picture, theme=None, width="content", config=learn.CHART_CONFIG)
    words = picture_and_words.container(width=learn.WORDS_PX)
    words.markdown(learn.bullets(step.sentences))
    if step.chart is not None:
        words.plotly_chart(step.chart, theme=None, width="content", config=learn.CHART_CONFIG)
    if step.table:
        with st.expander(step.table_title):
            st.dataframe(step.table, hide_index=True, width="stretch")
