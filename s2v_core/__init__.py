"""sleep2vec studio core library: data layer, model, training and evaluation.

Nothing here imports Streamlit, and importing the package has no side effects.
"""

__version__ = "0.1.0"
