"""sleep2vec studio: Streamlit entry point (page config + navigation only)."""

from __future__ import annotations

import streamlit as st


def main() -> None:
    st.set_page_config(page_title="sleep2vec studio", page_icon=":crescent_moon:", layout="wide")
    pages = [
        st.Page("pages/night.py", title="Night", icon=":material/bedtime:", default=True),
    ]
    st.navigation(pages).run()


main()
