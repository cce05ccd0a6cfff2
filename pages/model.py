"""Model page: which checkpoint is loaded, its card and training curves; load another one."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import app_state as C
from s2v_core.sanitize.text import markdown_safe


def _load(what: str, use, *args) -> None:
    """Switch to another checkpoint with ``use(*args)``; a failure is a message and the model stays."""
    with C.guarded(what) as g:
        use(*args)
    if not g.failed:
        st.rerun()


def _choose_checkpoint() -> None:
    """Offered server folders (by name), an upload, and a typed path only where the server allows it."""
    folders = C.allowed_model_folders()
    if folders:
        c = st.columns([3, 1], vertical_alignment="bottom")
        names = list(folders)
        current = C.model_label()
        name = c[0].selectbox("Checkpoints on this server", names, key="model_folder_choice",
                              index=names.index(current) if current in names else 0,
                              help=f"the shipped model and the folders listed in {C.ENV_MODEL_DIRS}")
        if c[1].button("Load this checkpoint", key="model_folder_load"):
            _load("loading the checkpoint", C.use_model_folder, name)
    files = st.file_uploader("Or upload a checkpoint: the config.json and model.safetensors of a folder written "
                             "by `s2v finetune` (e.g. RUN/best)", type=["json", "safetensors"],
                             accept_multiple_files=True, key="model_upload")
    if st.button("Load the uploaded checkpoint", key="model_upload_load", disabled=not files):
        _load("loading the uploaded checkpoint", C.use_uploaded_model, files)
    if C.any_model_path_allowed():
        new = st.text_input(f"Or a checkpoint folder on this machine ({C.ENV_ANY_MODEL_PATH} is set: for "
                            "single-user local use)", key="model_path_input")
        if st.button("Load", key="model_path_load") and new:
            _load("loading the checkpoint folder", C.use_model_path, new)


def render() -> None:
    st.title("Model")
    path = C.model_dir()
    st.write(f"Classifier checkpoint: **{markdown_safe(C.model_label())}**")  # a folder name may hold markup
    _choose_checkpoint()
    if st.session_state.get(C.K_MODEL_DIR) and st.button("Back to the shipped model"):
        C.use_shipped_model()
        st.rerun()
    with C.guarded("loading the model") as g:
        _, extra, mid = C.get_model()
    if g.failed:
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
        st.json(C.public_value(extra))


with C.guarded("showing the Model page"):
    render()
