"""Model hyper-parameters: one dataclass, the paper's values as defaults, named presets.

`ModelConfig.base()` and `ModelConfig.large()` carry the values of the paper and of
fairseq's published configurations; `ModelConfig.tiny()` keeps the paper's geometry
(a 400-sample receptive field and a 320-sample stride) at a size that trains on a
two-core laptop CPU.

`FineTuningConfig` holds fairseq's CTC fine-tuning recipes (10 min, 1 h, 10 h and
100 h of labels). A recipe takes the pretrained `ModelConfig` and returns the one to
fine-tune with: less dropout, more masking, a frozen feature encoder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

# (channels, kernel, stride) of each layer of the feature encoder, as in fairseq's
# `conv_feature_layers = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"`.
ConvLayerSpec = tuple[int, int, int]


def paper_conv_layers(channels: int = 512) -> tuple[ConvLayerSpec, ...]:
    """The seven conv layers of the paper's feature encoder, with `channels` channels each."""
    return ((channels, 10, 5),) + ((channels, 3, 2),) * 4 + ((channels, 2, 2),) * 2


def _spans_can_cover(length: int, spans: int, span: int) -> bool:
    """Can `spans` distinct starts, drawn as fairseq draws them, cover all `length` steps?

    Starts lie in [0, length - span), widened to [0, spans] when that holds too few;
    the check places each start as far right as still leaves no gap.
    """
    starts = length - span
    if starts <= spans:
        starts = spans + 1
    covered = 0
    for _ in range(spans):
        start = min(covered, starts - 1)
        if start + span <= covered:
            return False
        covered = start + span
        if covered >= length:
            return True
    return False


EXTRACTOR_MODES = ("group_norm", "layer_norm")
INTEGER_FIELDS = ("hidden_size", "num_layers", "num_heads", "ffn_size", "pos_conv_kernel", "pos_conv_groups",
                  "mask_time_length", "mask_time_min_masks", "mask_channel_length", "mask_channel_min_masks",
                  "num_code_groups", "num_codes_per_group", "codevector_dim", "final_dim", "num_negatives",
                  "cross_sample_negatives", "vocab_size", "blank_id", "freeze_finetune_updates")
# How the CTC loss of a batch is normalised (`ModelConfig.ctc_loss_reduction`):
#   "sentence": summed over the batch, divided by the number of utterances; fairseq's
#               `sentence_avg: true`, the setting of every published fine-tuning recipe;
#   "token":    summed, divided by the number of target characters (`sentence_avg: false`);
#   "sum":      summed and not divided (transformers' "sum");
#   "mean":     each utterance's loss divided by its target length, then averaged over
#               the batch (torch's and transformers' "mean").
CTC_REDUCTIONS = ("sentence", "token", "sum", "mean")


@dataclass
class ModelConfig:
    """Every hyper-parameter of wav2vec 2.0; defaults are the BASE model of the paper.

    Symbols follow the paper: G code groups of V entries each, K distractors, mask
    start probability p with span length M (fairseq's `mask_prob` is p * M).

    `quantize_targets=False` is the paper's "continuous targets" ablation (section 5,
    Table 4) and fairseq's `quantize_targets: false`: the context network still reads
    the masked continuous latents, but the targets and distractors of the contrastive
    loss are the latents Z themselves (after `dropout_features`), projected to
    `final_dim`. No quantizer is built, so there is no diversity loss, no codebook
    perplexity and no Gumbel temperature; the quantizer fields are then unused.
    """

    # Feature encoder (waveform X -> latents Z)
    conv_layers: tuple[ConvLayerSpec, ...] = field(default_factory=paper_conv_layers)
    extractor_mode: str = "group_norm"  # "group_norm" (BASE) or "layer_norm" (LARGE)
    conv_bias: bool = False
    feature_grad_mult: float = 0.1  # gradient scale into the feature encoder; 0 freezes it

    # Context network (transformer over Z -> context C)
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_size: int = 3072
    layer_norm_first: bool = False  # pre-LN ("stable layer norm", LARGE) vs post-LN (BASE)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_eps: float = 1e-5

    # Regularisation
    dropout: float = 0.1  # residual dropout inside the transformer
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = 0.1  # on the projected features, before masking
    dropout_features: float = 0.1  # on the unmasked features fed to the quantizer
    layerdrop: float = 0.05
    final_dropout: float = 0.0  # before the CTC head

    # Span masking (fairseq semantics). mask_time_prob is fairseq's `mask_prob` = p * M:
    # each step starts a span with probability p = 0.065, and a span covers M = 10 steps,
    # so 0.65 is the expected number of masked steps per step before overlaps merge
    # (about 49% of steps end up masked).
    mask_time_prob: float = 0.65  # p * M
    mask_time_length: int = 10  # M
    mask_time_min_masks: int = 2
    mask_channel_prob: float = 0.0  # the same p * M rule over the D channels (fine-tuning)
    mask_channel_length: int = 10
    mask_channel_min_masks: int = 0

    # Quantizer (Z -> Q)
    quantize_targets: bool = True  # False: continuous targets, Z itself (paper Table 4; see the docstring)
    num_code_groups: int = 2  # G
    num_codes_per_group: int = 320  # V
    codevector_dim: int = 256  # concatenated size of the G chosen entries
    gumbel_temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995)  # (start, floor, decay)

    # Pretraining objective
    final_dim: int = 256  # C and Q are both projected to this size before comparison
    num_negatives: int = 100  # K
    cross_sample_negatives: int = 0
    logit_temperature: float = 0.1  # kappa
    diversity_weight: float = 0.1  # alpha
    feature_penalty_weight: float = 10.0

    # CTC fine-tuning
    vocab_size: int = 32
    blank_id: int = 0
    ctc_zero_infinity: bool = True
    ctc_loss_reduction: str = "sentence"  # see CTC_REDUCTIONS; fairseq's sentence_avg
    freeze_finetune_updates: int = 0  # updates during which only the CTC head trains

    def __post_init__(self) -> None:
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)  # type: ignore[assignment]
        self.gumbel_temperature = tuple(float(v) for v in self.gumbel_temperature)  # type: ignore[assignment]
        self.validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def base(cls, **overrides: Any) -> "ModelConfig":
        """BASE: 12 layers, d=768, group_norm encoder, post-LN (paper, fairseq defaults)."""
        return cls(**overrides)

    @classmethod
    def large(cls, **overrides: Any) -> "ModelConfig":
        """LARGE pretrained on Libri-Light (LV-60k): 24 layers, d=1024, 16 heads, pre-LN.

        Every value is that of fairseq's
        `examples/wav2vec/config/pretraining/wav2vec2_large_librivox.yaml`: layer_norm
        encoder with conv bias and an unscaled gradient, no dropout of any kind, no
        LayerDrop, 768-d targets (`latent_dim` 0 means `final_dim`), Gumbel floor 0.1, and
        `loss_weights: [0.1, 0]`, so a diversity weight of 0.1 and no feature penalty.
        """
        values: dict[str, Any] = dict(
            extractor_mode="layer_norm",
            conv_bias=True,
            feature_grad_mult=1.0,
            hidden_size=1024,
            num_layers=24,
            num_heads=16,
            ffn_size=4096,
            layer_norm_first=True,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            dropout_input=0.0,
            dropout_features=0.0,
            layerdrop=0.0,
            codevector_dim=768,
            final_dim=768,
            diversity_weight=0.1,
            feature_penalty_weight=0.0,
            gumbel_temperature=(2.0, 0.1, 0.999995),
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def tiny(cls, **overrides: Any) -> "ModelConfig":
        """A laptop-sized model: the paper's encoder geometry with far fewer channels.

        The receptive field (400 samples) and the stride (320 samples) are the paper's;
        widths, depth and codebook are cut so that a pretraining step on 8 x 2 s of
        audio takes about a second on two CPU cores.
        """
        values: dict[str, Any] = dict(
            conv_layers=paper_conv_layers(128),
            hidden_size=192,
            num_layers=4,
            num_heads=4,
            ffn_size=768,
            pos_conv_kernel=64,
            pos_conv_groups=16,
            num_codes_per_group=64,
            codevector_dim=128,
            final_dim=128,
            num_negatives=50,
            layerdrop=0.0,
        )
        values.update(overrides)
        return cls(**values)

    # --------------------------------------------------------------- derived
    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame of the feature encoder (400 for the paper)."""
        field_size, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field_size += (kernel - 1) * jump
            jump *= stride
        return field_size

    @property
    def frame_stride(self) -> int:
        """Samples between consecutive frames of the feature encoder (320 for the paper)."""
        return math.prod(stride for _, _, stride in self.conv_layers)

    @property
    def conv_dim(self) -> int:
        """Channels of the last conv layer: the size of each latent z_t."""
        return self.conv_layers[-1][0]

    @property
    def min_pretraining_frames(self) -> int:
        """Fewest frames T from which span masking can never mask every frame.

        fairseq draws n = max(min_masks, int(p * M * T / M + u)) spans, u < 1, with
        starts in [0, T - M), a range it widens to [0, n] when T - M <= n and then lets
        spans run past the end. The last frame is reachable only in the widened range,
        so a draw can mask all T frames only for short T. 13 frames (4,240 samples,
        0.27 s) for the paper's p * M = 0.65, M = 10 and two spans at least: at 12 frames
        a third of the draws mask every frame. Shorter utterances are an error in
        pretraining (`Wav2Vec2ForPreTraining`): a fully masked utterance has no context
        to predict from.
        """
        if self.mask_time_prob >= 1.0:
            raise ValueError(f"ModelConfig.mask_time_prob={self.mask_time_prob}: with p * M >= 1 the spans can "
                             "cover every frame of any utterance; use a value below 1 for pretraining")
        span = self.mask_time_length
        # Past max(min_masks * M, M / (1 - p * M)) frames, n * M < T: no draw covers them all.
        limit = int(max(self.mask_time_min_masks * span, span / (1.0 - self.mask_time_prob))) + 2
        frames = 1
        for length in range(1, limit + 1):
            expected = self.mask_time_prob * length / span
            for spans in {max(self.mask_time_min_masks, math.floor(expected)),
                          max(self.mask_time_min_masks, math.ceil(expected))}:
                if _spans_can_cover(length, spans, span):
                    frames = length + 1
        return frames

    @property
    def min_pretraining_samples(self) -> int:
        """Samples that give `min_pretraining_frames` frames: the shortest utterance to pretrain on."""
        return self.receptive_field + (self.min_pretraining_frames - 1) * self.frame_stride

    def num_frames(self, num_samples: int) -> int:
        """Frames T the feature encoder makes from `num_samples` samples (0 if too short)."""
        length = num_samples
        for _, kernel, stride in self.conv_layers:
            length = (length - kernel) // stride + 1
            if length <= 0:
                return 0
        return length

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise `ValueError` naming the first field that is invalid, and why."""

        def fail(name: str, why: str) -> None:
            raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}: {why}")

        if not self.conv_layers:
            fail("conv_layers", "the feature encoder needs at least one conv layer")
        for index, layer in enumerate(self.conv_layers):
            if len(layer) != 3 or min(layer) < 1:
                fail("conv_layers", f"layer {index} must be (channels, kernel, stride) with all >= 1, got {layer}")
        if self.extractor_mode not in EXTRACTOR_MODES:
            fail("extractor_mode", f"must be one of {EXTRACTOR_MODES}")
        if self.feature_grad_mult < 0:
            fail("feature_grad_mult", "must be >= 0 (0 freezes the feature encoder)")
        for name in INTEGER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(name, f"must be an integer, got {type(value).__name__}")
        for name in ("hidden_size", "num_layers", "num_heads", "ffn_size", "pos_conv_kernel", "pos_conv_groups"):
            if getattr(self, name) < 1:
                fail(name, "must be a positive integer")
        if not self.layer_norm_eps > 0:
            fail("layer_norm_eps", "must be > 0: LayerNorm divides by sqrt(variance + eps)")
        if self.hidden_size % self.num_heads:
            fail("hidden_size", f"must be divisible by num_heads={self.num_heads}")
        if self.hidden_size % self.pos_conv_groups:
            fail("hidden_size", f"must be divisible by pos_conv_groups={self.pos_conv_groups}")
        for name in ("dropout", "attention_dropout", "activation_dropout", "dropout_input",
                     "dropout_features", "final_dropout", "layerdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(name, "a probability must lie in [0, 1)")
        for name in ("mask_time_prob", "mask_channel_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "must lie in [0, 1]; it is p * M, the expected fraction of span starts times M")
        for name in ("mask_time_length", "mask_channel_length"):
            if getattr(self, name) < 1:
                fail(name, "a span is at least one step long")
        for name in ("mask_time_min_masks", "mask_channel_min_masks", "cross_sample_negatives",
                     "freeze_finetune_updates"):
            if getattr(self, name) < 0:
                fail(name, "must be >= 0")
        if not isinstance(self.quantize_targets, bool):
            fail("quantize_targets", f"must be True or False, got {type(self.quantize_targets).__name__}")
        if self.num_code_groups < 1 or self.num_codes_per_group < 2:
            fail("num_codes_per_group" if self.num_code_groups >= 1 else "num_code_groups",
                 "the quantizer needs G >= 1 groups of V >= 2 entries")
        if self.codevector_dim < 1:
            fail("codevector_dim", "must be a positive integer")
        if self.codevector_dim % self.num_code_groups:
            fail("codevector_dim", f"must be divisible by num_code_groups={self.num_code_groups}")
        start, floor, decay = self.gumbel_temperature
        if not (start >= floor > 0 and 0 < decay <= 1):
            fail("gumbel_temperature", "must be (start, floor, decay) with start >= floor > 0 and 0 < decay <= 1")
        if self.final_dim < 1:
            fail("final_dim", "must be a positive integer")
        if self.num_negatives < 0 or self.num_negatives + self.cross_sample_negatives < 1:
            fail("num_negatives", "the contrastive task needs at least one distractor")
        if self.logit_temperature <= 0:
            fail("logit_temperature", "kappa divides the cosine similarity, so it must be > 0")
        if self.diversity_weight < 0 or self.feature_penalty_weight < 0:
            fail("diversity_weight" if self.diversity_weight < 0 else "feature_penalty_weight", "must be >= 0")
        if self.vocab_size < 2:
            fail("vocab_size", "CTC needs the blank and at least one symbol")
        if not 0 <= self.blank_id < self.vocab_size:
            fail("blank_id", f"must index the vocabulary [0, {self.vocab_size})")
        if self.ctc_loss_reduction not in CTC_REDUCTIONS:
            fail("ctc_loss_reduction", f"must be one of {CTC_REDUCTIONS}")

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict that `from_dict` turns back into an equal config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build a config from `to_dict` output; unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"ModelConfig has no field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# fairseq's CTC fine-tuning recipes for BASE, keyed by the amount of labelled audio
# (examples/wav2vec/config/finetuning/base_{10m,1h,10h,100h}.yaml). Values they leave
# unset are the defaults of fairseq's Wav2Vec2AsrConfig: no dropout, attention dropout,
# input dropout or final dropout. All four use tri-stage phases 0.1 / 0.4 / 0.5 with a
# final scale of 0.05, Adam (0.9, 0.98) with eps 1e-8, and sentence_avg.
FINETUNING_RECIPES: dict[str, dict[str, Any]] = {
    "10m": dict(mask_channel_prob=0.25, layerdrop=0.1, freeze_finetune_updates=10_000, max_updates=13_000,
                learning_rate=5e-5),
    "1h": dict(mask_channel_prob=0.25, layerdrop=0.1, freeze_finetune_updates=10_000, max_updates=13_000,
               learning_rate=5e-5),
    "10h": dict(mask_channel_prob=0.5, layerdrop=0.05, freeze_finetune_updates=10_000, max_updates=20_000,
                learning_rate=5e-5),
    "100h": dict(mask_channel_prob=0.5, layerdrop=0.1, freeze_finetune_updates=0, max_updates=80_000,
                 learning_rate=3e-5),
}

# fairseq masks channel spans of 64 for BASE (768 channels) and LARGE (1024) alike.
# A narrower model keeps BASE's share, 64 / 768 = 1/12 of its channels, so that the
# number of spans, mask_channel_prob * D / span = 3 (+1 with probability 0.25 at
# 10 min), and the fraction of channels masked stay what they are for BASE. For tiny
# (D = 192) that is a span of 16 channels; at BASE's 64 a single span would already
# hide a third of tiny's channels.
FAIRSEQ_CHANNEL_SPAN = 64
FAIRSEQ_BASE_WIDTH = 768


def channel_span_for_width(hidden_size: int) -> int:
    """The fine-tuning channel-mask span for a model of width D: 64, or D / 12 below BASE."""
    if hidden_size >= FAIRSEQ_BASE_WIDTH:
        return FAIRSEQ_CHANNEL_SPAN
    return max(1, round(FAIRSEQ_CHANNEL_SPAN * hidden_size / FAIRSEQ_BASE_WIDTH))


@dataclass(frozen=True)
class FineTuningConfig:
    """One CTC fine-tuning recipe: the model's regularisation plus the optimisation schedule.

    Build one with `FineTuningConfig.preset("10m", pretrained_config)` ("10m", "1h",
    "10h" or "100h" of labels; fairseq's `base_*.yaml`), then `apply(pretrained_config)`
    gives the `ModelConfig` to fine-tune with. `Wav2Vec2ForCTC.from_pretraining` does both,
    with the 10-minute recipe unless told otherwise.

    The model fields replace the pretraining ones: pretraining's dropout 0.1 becomes 0,
    masking goes on (p * M = 0.65 over time, channel spans of 64 with 0.25 to 0.5), the
    feature encoder stays frozen (`feature_grad_mult` 0), and for the first
    `freeze_finetune_updates` updates only the CTC head trains. The optimisation fields
    are for the training loop: Adam at `learning_rate`, tri-stage schedule over
    `max_updates` (warm-up, hold, decay by `phase_ratio`, down to `final_lr_scale`).
    """

    name: str = "10m"
    # Model regularisation during fine-tuning.
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.1
    dropout_input: float = 0.0
    final_dropout: float = 0.0
    layerdrop: float = 0.1
    mask_time_prob: float = 0.65
    mask_time_length: int = 10
    mask_channel_prob: float = 0.25
    mask_channel_length: int = FAIRSEQ_CHANNEL_SPAN
    feature_grad_mult: float = 0.0
    freeze_finetune_updates: int = 10_000
    ctc_loss_reduction: str = "sentence"
    # Optimisation (the training loop reads these).
    learning_rate: float = 5e-5
    max_updates: int = 13_000
    phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5)
    final_lr_scale: float = 0.05
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-8

    MODEL_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "dropout_input", "final_dropout",
                    "layerdrop", "mask_time_prob", "mask_time_length", "mask_channel_prob", "mask_channel_length",
                    "feature_grad_mult", "freeze_finetune_updates", "ctc_loss_reduction")

    @classmethod
    def preset(cls, labels: str, pretrained: ModelConfig, **overrides: Any) -> "FineTuningConfig":
        """fairseq's recipe for `labels` of labelled audio ("10m", "1h", "10h", "100h"),
        with the channel span fitted to `pretrained`'s width (see `channel_span_for_width`)."""
        if labels not in FINETUNING_RECIPES:
            raise ValueError(f"no fine-tuning recipe {labels!r}; choose one of {sorted(FINETUNING_RECIPES)}")
        values = dict(FINETUNING_RECIPES[labels], name=labels,
                      mask_channel_length=channel_span_for_width(pretrained.hidden_size))
        return cls(**(values | overrides))

    def with_updates(self, max_updates: int) -> "FineTuningConfig":
        """The recipe over `max_updates` updates, the head-only share kept.

        fairseq trains the head alone for 10k of 13k updates at 10 min and 1 h of labels
        (77%), 10k of 20k at 10 h, none at 100 h. A laptop run of a few thousand updates
        keeps that share; the fairseq count would leave the body frozen throughout.
        """
        if max_updates < 1:
            raise ValueError(f"max_updates={max_updates}: a run needs at least one update")
        frozen = round(self.freeze_finetune_updates * max_updates / self.max_updates)
        return dataclasses.replace(self, max_updates=max_updates, freeze_finetune_updates=frozen)

    def apply(self, pretrained: ModelConfig, **overrides: Any) -> ModelConfig:
        """`pretrained` with this recipe's model fields (and then `overrides`) in place."""
        values = pretrained.to_dict() | {name: getattr(self, name) for name in self.MODEL_FIELDS}
        return ModelConfig.from_dict(values | overrides)
