"""Per-modality tokenizer: one raw 30-s epoch -> one d-dimensional token (METHOD.md section 3)."""

from __future__ import annotations

from torch import Tensor, nn


class ModalityTokenizer(nn.Module):
    """MLP plus linear residual from a raw epoch to a token, then LayerNorm.

    ``LayerNorm(Dropout(Linear(SiLU(Linear(x)))) + Linear(x))``, with a hidden width of ``2 d``.
    Each modality has its own instance (weights are not shared).

    Parameters
    ----------
    samples_per_token : int
        Samples in one 30-s epoch of the modality (3840 at 128 Hz, 120 at 4 Hz).
    d_token : int
        Token width d.
    dropout : float
        Dropout after the MLP branch (0.1 in the paper).

    Examples
    --------
    >>> import torch
    >>> tok = ModalityTokenizer(120, 8)
    >>> tok(torch.zeros(2, 5, 120)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, samples_per_token: int, d_token: int, dropout: float = 0.1):
        super().__init__()
        self.samples_per_token = samples_per_token
        self.mlp = nn.Sequential(
            nn.Linear(samples_per_token, 2 * d_token),
            nn.SiLU(),
            nn.Linear(2 * d_token, d_token),
            nn.Dropout(dropout),
        )
        self.residual = nn.Linear(samples_per_token, d_token)
        self.norm = nn.LayerNorm(d_token)

    def forward(self, x: Tensor) -> Tensor:
        """Tokenise epochs.

        Parameters
        ----------
        x : Tensor, shape (..., samples_per_token), float
            Robust-scaled raw samples of each epoch.

        Returns
        -------
        Tensor, shape (..., d_token)
        """
        return self.norm(self.mlp(x) + self.residual(x))  # (..., d)
