"""The feature encoder f: X -> Z, and the feature projection into the context network.

A stack of 1-D convolutions turns the raw 16 kHz waveform X (B, L) into latent
vectors Z (B, T, C), one every 320 samples (20 ms), each seeing 400 samples (25 ms).
BASE normalises only the first layer, with one GroupNorm group per channel
("group_norm" mode); LARGE puts a LayerNorm over channels in every layer
("layer_norm" mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


class GradMultiply(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by `scale` going back."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """Return `x` unchanged, but with its gradient multiplied by `scale` in backward."""
    return x if scale == 1.0 else GradMultiply.apply(x, scale)


class ConvLayer(nn.Module):
    """One conv block: Conv1d -> optional norm -> GELU.

    `norm` is "group" (GroupNorm with one group per channel, i.e. each channel
    normalised over time), "layer" (LayerNorm over channels at each step) or None.
    Input (B, C_in, T_in) -> output (B, C_out, T_out), T_out = (T_in - kernel) // stride + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 bias: bool, norm: str | None, eps: float = 1e-5) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)  # fairseq's init; PyTorch's default starts near-silent
        if norm == "group":
            self.norm: nn.Module | None = nn.GroupNorm(out_channels, out_channels, eps=eps, affine=True)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels, eps=eps, elementwise_affine=True)
        else:
            self.norm = None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # (B, C_out, T_out)
        if isinstance(self.norm, nn.LayerNorm):
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm is not None:
            x = self.norm(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """The CNN that maps a waveform X (B, L) to latents Z (B, T, C).

    `extractor_mode="group_norm"`: GroupNorm after the first conv only (BASE).
    `extractor_mode="layer_norm"`: LayerNorm after every conv (LARGE).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        layers = []
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(config.conv_layers):
            if config.extractor_mode == "layer_norm":
                norm: str | None = "layer"
            else:
                norm = "group" if index == 0 else None
            layers.append(ConvLayer(in_channels, channels, kernel, stride, config.conv_bias, norm, config.layer_norm_eps))
            in_channels = channels
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, waveform: Tensor) -> Tensor:
        """waveform (B, L) -> latents Z (B, T, C), T = config.num_frames(L)."""
        x = waveform.unsqueeze(1)  # (B, 1, L)
        for layer in self.conv_layers:
            x = layer(x)  # (B, C, T_layer)
        return x.transpose(1, 2)  # (B, T, C)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frame counts (B,) produced from sample counts `lengths` (B,)."""
        for layer in self.conv_layers:
            lengths = torch.div(lengths - layer.kernel, layer.stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)


class FeatureProjection(nn.Module):
    """LayerNorm over the C conv channels, then Linear C -> D into the transformer.

    Returns both the normalised features (B, T, C), which the quantizer reads, and the
    projected ones (B, T, D), which the context network reads.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout_input)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        normed = self.layer_norm(features)  # (B, T, C)
        return normed, self.dropout(self.projection(normed))  # (B, T, C), (B, T, D)


def validate_waveform(waveform: Tensor, receptive_field: int, attention_mask: Tensor | None = None) -> None:
    """Raise a `ValueError` that says what is wrong with a model input, and how to fix it.

    The model takes a float waveform (B, L) of at least `receptive_field` samples,
    with finite values; `attention_mask`, when given, is (B, L) like the waveform.
    """
    if not isinstance(waveform, torch.Tensor):
        raise ValueError(f"waveform must be a torch.Tensor of shape (batch, samples), got {type(waveform).__name__}")
    if waveform.dim() != 2:
        hint = " Use waveform.unsqueeze(0) for a single utterance." if waveform.dim() == 1 else ""
        raise ValueError(f"waveform must have shape (batch, samples), got shape {tuple(waveform.shape)}.{hint}")
    if not waveform.is_floating_point():
        raise ValueError(f"waveform must be a float tensor, got dtype {waveform.dtype}. "
                         "Convert int16 PCM with waveform.float() / 32768.")
    if waveform.shape[1] < receptive_field:
        raise ValueError(f"waveform has {waveform.shape[1]} samples, fewer than the feature encoder's "
                         f"receptive field of {receptive_field} samples; pad it or use longer audio.")
    if not torch.isfinite(waveform).all():
        bad = (~torch.isfinite(waveform)).nonzero()[0].tolist()
        raise ValueError(f"waveform contains NaN or inf (first at batch {bad[0]}, sample {bad[1]}); "
                         "check the audio file and any preprocessing.")
    if attention_mask is not None and attention_mask.shape != waveform.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but the waveform has "
                         f"{tuple(waveform.shape)}; give one 0/1 flag per sample.")
