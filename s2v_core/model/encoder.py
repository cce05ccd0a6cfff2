"""Shared pre-norm Transformer encoder with rotary position embeddings (METHOD.md section 3).

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` with a key
padding mask, so padded tokens never influence valid ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EncoderLayer",
    "RotarySelfAttention",
    "SharedEncoder",
    "apply_rotary",
    "rotary_cos_sin",
    "small_normal",
]


def rotary_cos_sin(
    n_positions: int, head_dim: int, *, base: float = 10000.0, device=None
) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables of rotary embeddings, computed on the fly in float32.

    Parameters
    ----------
    n_positions : int
        Sequence length S (positions 0 .. S-1).
    head_dim : int
        Width of one attention head; must be even.
    base : float
        Frequency base; channel pair ``k`` rotates by ``pos * base ** (-2k / head_dim)`` rad.

    Returns
    -------
    cos, sin : Tensor, shape (S, head_dim // 2), float32
    """
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, device=device, dtype=torch.float32) / half)
    angles = torch.arange(n_positions, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs ``(k, k + head_dim/2)`` of ``x`` by position-dependent angles.

    Parameters
    ----------
    x : Tensor, shape (B, heads, S, head_dim)
    cos, sin : Tensor, shape (S, head_dim // 2)

    Returns
    -------
    Tensor, same shape and dtype as ``x``.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def small_normal(n: int) -> Tensor:
    """``randn(n) * 0.02`` (same values for the same seed), or an empty tensor on the meta device.

    A checkpoint is built on the meta device before its weights are loaded. There, ``randn`` goes
    through a reference implementation that imports ``torch.fx.experimental.symbolic_shapes``
    (sympy) and the product imports ``torch._dynamo``: about 1 s of every cold ``s2v predict``
    for values that are overwritten anyway.
    """
    out = torch.empty(n)
    return out if out.is_meta else torch.randn(n).mul_(0.02)


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention with RoPE on queries and keys."""

    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = hidden // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, attn_mask: Tensor | None, rope: tuple[Tensor, Tensor]) -> Tensor:
        """Attend.

        ``x`` (B, S, H); ``attn_mask`` (B, 1, 1, S) bool (True = may attend) or None;
        ``rope`` the (cos, sin) tables of :func:`rotary_cos_sin` for S positions.
        """
        B, S, H = x.shape
        qkv = self.qkv(x).view(B, S, 3, self.n_heads, self.head_dim)  # (B, S, 3, heads, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, S, hd)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, heads, S, hd)
        return self.out(y.transpose(1, 2).reshape(B, S, H))  # (B, S, H)


class EncoderLayer(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` with a GELU MLP."""

    def __init__(self, hidden: int, n_heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = RotarySelfAttention(hidden, n_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp_ratio * hidden),
            nn.GELU(),
            nn.Linear(mlp_ratio * hidden, hidden),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None, rope: tuple[Tensor, Tensor]) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), attn_mask, rope))  # (B, S, H)
        return x + self.drop(self.mlp(self.norm2(x)))  # (B, S, H)


class SharedEncoder(nn.Module):
    """Linear(d, H), optional learned CLS token, RoPE transformer layers, final LayerNorm.

    Every modality's token sequence goes through this same module separately; callers batch
    modalities along the batch dimension.

    Parameters
    ----------
    d_token, hidden, n_layers, n_heads, mlp_ratio : int
        Sizes (see :class:`~s2v_core.model.config.ModelConfig`).
    dropout : float
        Attention and residual dropout.
    use_cls : bool
        Prepend a learned CLS token (position 0) to every sequence.
    rope_base : float
        RoPE frequency base.
    """

    def __init__(
        self,
        d_token: int,
        hidden: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: int,
        dropout: float,
        use_cls: bool,
        rope_base: float = 10000.0,
    ):
        super().__init__()
        self.input_proj = nn.Linear(d_token, hidden)
        self.cls = nn.Parameter(small_normal(hidden)) if use_cls else None
        self.layers = nn.ModuleList(
            EncoderLayer(hidden, n_heads, mlp_ratio, dropout) for _ in range(n_layers)
        )
        self.head_dim = hidden // n_heads
        self.rope_base = rope_base
        self.final_norm = nn.LayerNorm(hidden)

    def forward(self, tokens: Tensor, valid: Tensor) -> tuple[Tensor, Tensor | None]:
        """Encode token sequences.

        Parameters
        ----------
        tokens : Tensor, shape (R, T, d_token)
            One row per (sample, modality) sequence.
        valid : Tensor, shape (R, T), bool
            False at padding; padded keys are masked out of attention. Hidden states at padded
            positions are set to zero.

        Returns
        -------
        hidden : Tensor, shape (R, T, hidden)
        cls : Tensor, shape (R, hidden), or None without a CLS token
        """
        x = self.input_proj(tokens)  # (R, T, H)
        key_valid = valid
        if self.cls is not None:
            cls = self.cls.to(x.dtype).expand(x.shape[0], 1, -1)  # (R, 1, H)
            x = torch.cat((cls, x), dim=1)  # (R, 1 + T, H)
            key_valid = torch.cat((valid.new_ones(valid.shape[0], 1), valid), dim=1)
        attn_mask = None
        # On a CPU, reading whether every key is valid is free and keeps the mask-free attention
        # kernel; on a GPU the read would make the host wait for the device, so the mask is built
        # anyway (an all-True mask changes nothing)
        if key_valid.device.type != "cpu" or not bool(key_valid.all()):
            # a row without any valid key would give NaN; let it attend everywhere, its
            # outputs are zeroed below and never reach a valid position
            empty = ~key_valid.any(dim=1, keepdim=True)  # (R, 1)
            attn_mask = (key_valid | empty)[:, None, None, :]  # (R, 1, 1, S)
        rope = rotary_cos_sin(x.shape[1], self.head_dim, base=self.rope_base, device=x.device)
        for layer in self.layers:
            x = layer(x, attn_mask, rope)
        x = self.final_norm(x)  # (R, S, H)
        cls_out = x[:, 0] if self.cls is not None else None  # (R, H)
        hidden = x[:, 1:] if self.cls is not None else x  # (R, T, H)
        hidden = hidden * valid[..., None].to(hidden.dtype)  # zero at padding
        return hidden, cls_out
