"""What the app and the exports draw, without Streamlit: figures, the signal viewer, embedding maps, exports.

The modules are imported one by one (``from s2v_core.views import plots``); the package itself
loads nothing, so an export does not pay for UMAP or plotly.
"""

__all__ = []  # noqa: RUF022
