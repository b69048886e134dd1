"""The context network g: masked features -> context vectors C.

A convolutional relative positional embedding is added to the input, then a
Transformer encoder mixes information over the whole utterance. BASE uses post-LN
layers (normalise after each residual sum); LARGE uses pre-LN layers (normalise the
input of each sub-block, and once more at the end), which trains more stably.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .config import ModelConfig


class PositionalConvEmbedding(nn.Module):
    """Relative positions from a wide grouped convolution over time.

    Conv1d(D, D, kernel=128, groups=16) with weight normalisation over the kernel axis,
    padding kernel // 2 on both sides; an even kernel makes one extra step, which is
    trimmed. Then GELU. Input and output (B, T, D).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim, kernel = config.hidden_size, config.pos_conv_kernel
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=config.pos_conv_groups)
        # fairseq initialisation: normal with std sqrt(4 / (kernel * dim)), zero bias.
        nn.init.normal_(conv.weight, mean=0.0, std=(4.0 / (kernel * dim)) ** 0.5)
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)  # g: (1, 1, kernel), v: (D, D/groups, kernel)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2))  # (B, D, T + trim)
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)  # (B, T, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`.

    With `need_weights=True` it computes softmax(Q K^T / sqrt(d_head)) explicitly and
    returns the weights (B, H, T, T) for visualisation; the output is the same.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_bias: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), attn_bias (B, 1, 1, T) additive (-inf at padding) -> (B, T, D)."""
        batch, steps, dim = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) * self.head_dim ** -0.5  # (B, H, T, T)
            if attn_bias is not None:
                scores = scores + attn_bias
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(batch, steps, dim)  # (B, T, D)
        return self.out_proj(out), weights


class FeedForward(nn.Module):
    """Linear D -> F, GELU, dropout, Linear F -> D, dropout. (B, T, D) -> (B, T, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.ffn_size)
        self.output = nn.Linear(config.ffn_size, config.hidden_size)
        self.activation_dropout = nn.Dropout(config.activation_dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.output(self.activation_dropout(F.gelu(self.intermediate(x)))))


class TransformerLayer(nn.Module):
    """One encoder layer, post-LN (BASE) or pre-LN (`layer_norm_first`, LARGE).

    post-LN: x = LN(x + Attn(x)); x = LN'(x + FFN(x))
    pre-LN:  x = x + Attn(LN(x));  x = x + FFN(LN'(x))
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.attention = SelfAttention(config.hidden_size, config.num_heads, config.attention_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, attn_bias: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        if self.layer_norm_first:
            attended, weights = self.attention(self.attention_norm(x), attn_bias, need_weights)
            x = x + self.dropout(attended)
            x = x + self.feed_forward(self.final_norm(x))
        else:
            attended, weights = self.attention(x, attn_bias, need_weights)
            x = self.attention_norm(x + self.dropout(attended))
            x = self.final_norm(x + self.feed_forward(x))
        return x, weights


@dataclass
class EncoderOutput:
    """What the context network returns.

    last_hidden_state: (B, T, D) context vectors C.
    hidden_states: the input of the first layer and the output of each layer, (B, T, D)
        each, num_layers + 1 in all (for pre-LN, before the final LayerNorm that makes
        last_hidden_state).
    attentions: one (B, H, T, T) weight tensor per layer, when asked for.
    """

    last_hidden_state: Tensor
    hidden_states: list[Tensor] | None = None
    attentions: list[Tensor] | None = None


class TransformerEncoder(nn.Module):
    """Positional embedding + the stack of layers, with LayerDrop in training."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layerdrop = config.layerdrop
        self.pos_conv = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        for module in self.layers.modules():  # BERT-style init, as fairseq's init_bert_params
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> EncoderOutput:
        """x (B, T, D); attention_mask (B, T), True (or 1) at real frames, False at padding."""
        attn_bias = None
        if attention_mask is not None:
            keep = attention_mask.bool()
            x = x.masked_fill(~keep.unsqueeze(-1), 0.0)  # padding must not leak through the conv
            attn_bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            attn_bias = attn_bias.masked_fill(~keep, torch.finfo(x.dtype).min)[:, None, None, :]  # (B, 1, 1, T)

        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)

        hidden_states: list[Tensor] | None = [] if output_hidden_states else None
        attentions: list[Tensor] | None = [] if output_attentions else None
        for layer in self.layers:
            if hidden_states is not None:
                hidden_states.append(x)
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                continue
            x, weights = layer(x, attn_bias, need_weights=output_attentions)
            if attentions is not None and weights is not None:
                attentions.append(weights)
        if hidden_states is not None:
            hidden_states.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return EncoderOutput(x, hidden_states, attentions)
