"""sleep2vec studio: Streamlit entry point (page config + navigation only)."""

from __future__ import annotations

import streamlit as st


def main() -> None:
    st.set_page_config(page_title="sleep2vec studio", page_icon=":crescent_moon:", layout="wide")
    pages = [
        st.Page("pages/night.py", title="Night", icon=":material/bedtime:", default=True),
        st.Page("pages/hypnogram.py", title="Hypnogram", icon=":material/stacked_line_chart:"),
        st.Page("pages/modalities.py", title="Modalities", icon=":material/sensors:"),
        st.Page("pages/gates.py", title="Gates", icon=":material/tune:"),
        st.Page("pages/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
        st.Page("pages/export.py", title="Export", icon=":material/download:"),
        st.Page("pages/model.py", title="Model", icon=":material/memory:"),
    ]
    page = st.navigation(pages)
    from app_state import guarded, warm_up_model  # after st.navigation: see app_state.py

    warm_up_model()
    with guarded("opening this page"):  # each page guards its own work; this catches e.g. a failed import
        page.run()


main()
