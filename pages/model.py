"""Model page: which checkpoint is loaded, its card and training curves; load another one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

import app_state as C
from s2v_core.errors import S2VError


def render() -> None:
    st.title("Model")
    path = C.model_dir()
    st.write(f"Classifier checkpoint: `{path}`")
    new = st.text_input("Load another local checkpoint folder (safetensors + config.json)", key="model_path_input")
    if st.button("Load") and new:
        if not (Path(new) / "config.json").exists():
            st.error(f"{new}: no config.json there; pick a folder written by `s2v finetune` (…/best)")
        else:
            st.session_state[C.K_MODEL_DIR] = new
            st.rerun()
    if st.session_state.get(C.K_MODEL_DIR) and st.button("Back to the shipped model"):
        st.session_state.pop(C.K_MODEL_DIR)
        st.rerun()
    try:
        _, extra, mid = C.get_model()
    except S2VError as exc:
        C.show_error(exc)
        return
    st.caption(f"Model id {mid}")
    root = path.parent
    card = root / "MODEL_CARD.md"
    if card.exists():
        st.markdown(card.read_text())
    training = root / "training"
    for name, ycols in (("pretrain_history.csv", ["train_loss", "val_loss", "val_retrieval_mean"]),
                        ("finetune_history.csv", ["train_loss", "val_kappa"])):
        f = training / name
        if f.exists():
            df = pd.read_csv(f)
            cols = [c for c in ycols if c in df.columns]
            st.plotly_chart(px.line(df, x="epoch", y=cols, title=name.replace("_", " ").removesuffix(".csv"),
                                    height=280), width="stretch")
    retrieval = training / "retrieval.csv"
    if retrieval.exists():
        r = pd.read_csv(retrieval)
        mat = r.pivot_table(index="modality_a", columns="modality_b", values="accuracy")
        st.plotly_chart(px.imshow(mat, text_auto=".2f", color_continuous_scale="Blues", height=420,
                                  title="Validation retrieval accuracy per modality pair (pretraining)"),
                        width="stretch")
    with st.expander("Checkpoint metadata"):
        st.json(extra)


render()
