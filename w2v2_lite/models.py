"""The three models: the encoder alone, pretraining, and CTC fine-tuning.

    waveform X --FeatureEncoder--> Z --FeatureProjection--> mask --TransformerEncoder--> C
                                   Z --GumbelVectorQuantizer--> Q          (pretraining)
                                   Z                                       (pretraining, continuous targets)
                                                                C --Linear--> characters (CTC)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FineTuningConfig, ModelConfig
from .context_network import TransformerEncoder
from .feature_encoder import FeatureEncoder, FeatureProjection, scale_gradient, validate_waveform
from .losses import batched_contrastive_logits, contrastive_accuracy, contrastive_loss, diversity_loss, feature_penalty
from .masking import apply_mask, span_mask
from .negatives import sample_negatives
from .quantizer import GumbelVectorQuantizer


@dataclass
class ModelOutput:
    """last_hidden_state: (B, T, D) context vectors C.
    extract_features: (B, T, C) latents Z after the LayerNorm (what the quantizer reads).
    features: (B, T, C) raw latents Z, before the LayerNorm (for the feature penalty).
    frame_mask: (B, T) bool, True at real frames (None without an attention mask).
    time_mask: (B, T) bool, the steps replaced by the mask embedding (or None).
    hidden_states / attentions: per layer, when asked for."""

    last_hidden_state: Tensor
    extract_features: Tensor
    features: Tensor
    frame_mask: Tensor | None = None
    time_mask: Tensor | None = None
    hidden_states: list[Tensor] | None = None
    attentions: list[Tensor] | None = None


class Wav2Vec2Model(nn.Module):
    """Feature encoder + projection + masking + context network: X (B, L) -> C (B, T, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_encoder = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.mask_embedding = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.encoder = TransformerEncoder(config)
        self.feature_encoder_frozen = config.feature_grad_mult == 0.0

    def freeze_feature_encoder(self) -> None:
        """Stop training the CNN: no gradients, and it runs without building a graph."""
        self.feature_encoder_frozen = True
        for parameter in self.feature_encoder.parameters():
            parameter.requires_grad_(False)

    def frame_mask(self, attention_mask: Tensor, num_frames: int) -> Tensor:
        """Sample-level mask (B, L) -> frame-level mask (B, T): True at real frames."""
        lengths = self.feature_encoder.output_lengths(attention_mask.long().sum(dim=-1))
        return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]

    def forward(self, waveform: Tensor, attention_mask: Tensor | None = None, time_mask: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                draw_time_mask: bool | None = None, generator: torch.Generator | None = None) -> ModelOutput:
        """waveform X (B, L) -> ModelOutput with C (B, T, D).

        attention_mask: (B, L), 1 at real samples and 0 at padding.
        time_mask: (B, T) bool, steps to replace by the mask embedding. When None, spans
            are drawn with the config's masking parameters if `draw_time_mask` (by
            default: in training mode only), using `generator`.
        """
        validate_waveform(waveform, self.config.receptive_field, attention_mask)
        if self.feature_encoder_frozen:
            with torch.no_grad():
                features = self.feature_encoder(waveform)  # (B, T, C)
        else:
            features = scale_gradient(self.feature_encoder(waveform), self.config.feature_grad_mult)
        batch, steps, _ = features.shape
        frame_mask = None if attention_mask is None else self.frame_mask(attention_mask, steps)
        extract_features, hidden = self.feature_projection(features)  # (B, T, C), (B, T, D)

        cfg = self.config
        lengths = None if frame_mask is None else frame_mask.sum(dim=-1)
        if draw_time_mask is None:
            draw_time_mask = self.training
        if time_mask is None and draw_time_mask and cfg.mask_time_prob > 0:
            time_mask = span_mask((batch, steps), cfg.mask_time_prob, cfg.mask_time_length,
                                  cfg.mask_time_min_masks, lengths, generator=generator, device=hidden.device)
        channel_mask = None
        if self.training and cfg.mask_channel_prob > 0:
            channel_mask = span_mask((batch, cfg.hidden_size), cfg.mask_channel_prob, cfg.mask_channel_length,
                                     cfg.mask_channel_min_masks, generator=generator, device=hidden.device)
        if time_mask is not None:
            if time_mask.shape != (batch, steps):
                raise ValueError(f"time_mask has shape {tuple(time_mask.shape)}, expected (batch, frames) = "
                                 f"{(batch, steps)}; frames = config.num_frames(samples).")
            time_mask = time_mask.bool()
        hidden = apply_mask(hidden, time_mask, self.mask_embedding, channel_mask)

        encoded = self.encoder(hidden, frame_mask, output_hidden_states, output_attentions)
        return ModelOutput(encoded.last_hidden_state, extract_features, features, frame_mask, time_mask,
                           encoded.hidden_states, encoded.attentions)


@dataclass
class PreTrainingOutput:
    """Everything one pretraining step produces.

    loss: scalar, per masked step: L_m + alpha * L_d + beta * feature penalty.
    contrastive_loss: L_m averaged over the masked steps (x num_masked = the summed loss
        that fairseq and transformers report).
    diversity_loss, feature_penalty: the other two terms, unweighted.
    accuracy: fraction of masked steps whose positive scores strictly above every
        distractor (a tie counts as wrong; see `losses.contrastive_accuracy`).
    code_perplexity / softmax_perplexity: codebook usage, hard choices / averaged softmax,
        out of G * V.
    temperature: the Gumbel temperature used.
    mask_fraction: fraction of real frames that were masked; num_masked: their count.
    logits: (N, 1 + K) contrastive logits of the masked steps, positive first.
    projected_context / projected_quantized: (B, T, final_dim) c_t and the targets q_t
        after their projections. codes: (B, T, G) chosen codebook entries. time_mask: (B, T) bool.

    With continuous targets (`ModelConfig.quantize_targets=False`) there is no quantizer:
    the loss has no L_d term, and diversity_loss, code_perplexity, softmax_perplexity,
    temperature and codes are None, as fairseq leaves them out of its output;
    projected_quantized holds the projected latents Z.
    """

    loss: Tensor
    contrastive_loss: Tensor
    diversity_loss: Tensor | None
    feature_penalty: Tensor
    accuracy: Tensor
    code_perplexity: Tensor | None
    softmax_perplexity: Tensor | None
    temperature: float | None
    mask_fraction: float
    num_masked: int
    logits: Tensor
    projected_context: Tensor
    projected_quantized: Tensor
    codes: Tensor | None
    time_mask: Tensor
    hidden_states: list[Tensor] | None = None


class Wav2Vec2ForPreTraining(nn.Module):
    """wav2vec 2.0 with its self-supervised objective (paper section 3).

    With `config.quantize_targets=False` (the paper's continuous-target ablation) no
    quantizer is built, and `project_q` maps the latents Z (conv_dim channels) rather
    than the codevectors to final_dim, as fairseq's `project_q` does.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout_features = nn.Dropout(config.dropout_features)
        self.quantizer = GumbelVectorQuantizer(config) if config.quantize_targets else None
        target_dim = config.codevector_dim if config.quantize_targets else config.conv_dim
        self.project_q = nn.Linear(target_dim, config.final_dim)
        self.project_hid = nn.Linear(config.hidden_size, config.final_dim)

    def set_gumbel_temperature(self, temperature: float) -> None:
        """Set the quantizer's Gumbel temperature; continuous targets have none, and ignore it."""
        if self.quantizer is not None:
            self.quantizer.set_temperature(temperature)

    def _check_long_enough_to_mask(self, waveform: Tensor, attention_mask: Tensor | None) -> None:
        """Refuse utterances so short that a drawn span mask could hide all of their frames.

        Checked on the lengths, before any work, so the error does not depend on the draw.
        A `time_mask` passed in is the caller's choice and is not checked.
        """
        cfg = self.config
        validate_waveform(waveform, cfg.receptive_field, attention_mask)
        samples = [waveform.shape[-1]] if attention_mask is None else attention_mask.long().sum(dim=-1).tolist()
        # An utterance of no frames (all padding) has nothing to mask and is left alone.
        shortest = min((int(n) for n in samples if cfg.num_frames(int(n)) > 0), default=None)
        if shortest is None:
            return
        frames = cfg.num_frames(shortest)
        if frames < cfg.min_pretraining_frames:
            raise ValueError(
                f"an utterance of {shortest} samples gives {frames} frames, and with mask_time_prob="
                f"{cfg.mask_time_prob} and mask_time_length={cfg.mask_time_length} its spans could mask every "
                f"frame. Pretrain on utterances of at least {cfg.min_pretraining_samples} samples "
                f"({cfg.min_pretraining_frames} frames): SpeechDataset leaves shorter ones out by default, "
                "or pass time_mask yourself.")

    def forward(self, waveform: Tensor, attention_mask: Tensor | None = None, time_mask: Tensor | None = None,
                negative_indices: Tensor | None = None, generator: torch.Generator | None = None,
                output_hidden_states: bool = False) -> PreTrainingOutput:
        """waveform X (B, L) -> PreTrainingOutput.

        time_mask: (B, T) bool, the steps to mask; drawn from the config when None.
        negative_indices: (B, T, K) long indices into the flattened (B * T) quantized
            targets (see `sample_negatives`); drawn when None.
        generator: makes the drawn mask and negatives reproducible.
        """
        cfg = self.config
        if time_mask is None:
            self._check_long_enough_to_mask(waveform, attention_mask)
        outputs = self.wav2vec2(waveform, attention_mask, time_mask, output_hidden_states=output_hidden_states,
                                draw_time_mask=True, generator=generator)
        batch, steps, _ = outputs.features.shape
        time_mask = outputs.time_mask
        if time_mask is None:
            raise ValueError(f"pretraining needs masked steps, but mask_time_prob={cfg.mask_time_prob}; "
                             "pass time_mask or set ModelConfig.mask_time_prob > 0")
        if outputs.frame_mask is not None:
            time_mask = time_mask & outputs.frame_mask
        flat_mask = time_mask.reshape(-1)
        num_masked = int(flat_mask.sum())
        if num_masked == 0:
            raise ValueError("time_mask masks no real frame, so there is nothing to predict; mask at least one "
                             "step (span_mask with mask_time_min_masks >= 1 guarantees it)")
        if negative_indices is None:
            negative_indices = sample_negatives(time_mask, cfg.num_negatives, cfg.cross_sample_negatives, generator)

        latents = self.dropout_features(outputs.extract_features)  # (B, T, C), unmasked
        if self.quantizer is None:  # continuous targets: the latents themselves
            quantizer_out = None
            quantized = self.project_q(latents)  # (B, T, F)
        else:
            quantizer_out = self.quantizer(latents, time_mask)
            quantized = self.project_q(quantizer_out.quantized)  # (B, T, F)
        context = self.project_hid(outputs.last_hidden_state)  # (B, T, F)

        logits = batched_contrastive_logits(context, quantized, time_mask, negative_indices,
                                            cfg.logit_temperature)  # (N, 1 + K)
        l_m = contrastive_loss(logits) / num_masked
        penalty = feature_penalty(outputs.features)
        if quantizer_out is None:
            l_d = None
            loss = l_m + cfg.feature_penalty_weight * penalty
        else:
            num_entries = cfg.num_code_groups * cfg.num_codes_per_group
            l_d = diversity_loss(quantizer_out.softmax_perplexity, num_entries)
            loss = l_m + cfg.diversity_weight * l_d + cfg.feature_penalty_weight * penalty
        real_frames = batch * steps if outputs.frame_mask is None else int(outputs.frame_mask.sum())
        with torch.no_grad():
            accuracy = contrastive_accuracy(logits)
        return PreTrainingOutput(
            loss=loss, contrastive_loss=l_m, diversity_loss=l_d, feature_penalty=penalty, accuracy=accuracy,
            code_perplexity=None if quantizer_out is None else quantizer_out.code_perplexity,
            softmax_perplexity=None if quantizer_out is None else quantizer_out.softmax_perplexity,
            temperature=None if self.quantizer is None else self.quantizer.temperature,
            mask_fraction=num_masked / max(real_frames, 1), num_masked=num_masked, logits=logits,
            projected_context=context, projected_quantized=quantized,
            codes=None if quantizer_out is None else quantizer_out.codes, time_mask=time_mask,
            hidden_states=outputs.hidden_states,
        )


@dataclass
class CTCOutput:
    """logits: (B, T, vocab) per-frame character scores; output_lengths: (B,) real frames;
    loss: CTC loss when labels were given (reduction from the config)."""

    logits: Tensor
    output_lengths: Tensor
    loss: Tensor | None = None
    hidden_states: list[Tensor] | None = None


class Wav2Vec2ForCTC(nn.Module):
    """The context network with a linear character head, trained with CTC (paper section 4).

    The feature encoder is frozen from the start, as in the paper's fine-tuning; pass
    `freeze_feature_encoder=False` to train it too. For the first
    `config.freeze_finetune_updates` updates (counted by `set_num_updates`, which the
    training loop calls) the whole wav2vec 2.0 body runs without gradients, so only the
    head learns, as in fairseq.
    """

    def __init__(self, config: ModelConfig, freeze_feature_encoder: bool = True) -> None:
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        if freeze_feature_encoder:
            self.wav2vec2.freeze_feature_encoder()
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        nn.init.xavier_uniform_(self.lm_head.weight)  # fairseq's Linear() for the CTC projection
        nn.init.zeros_(self.lm_head.bias)
        self.num_updates = 0

    @classmethod
    def from_pretraining(cls, pretrained: Wav2Vec2ForPreTraining, vocab_size: int,
                         recipe: FineTuningConfig | str | None = "10m",
                         **config_overrides: object) -> "Wav2Vec2ForCTC":
        """A CTC model whose encoder starts from `pretrained`'s weights, with a fresh head.

        recipe: the fine-tuning regularisation to apply, a `FineTuningConfig` or the name
            of one of fairseq's recipes ("10m", "1h", "10h", "100h"; see
            `FineTuningConfig.preset`). The default is the 10-minute recipe; None keeps
            the pretraining values (dropout, masking, gradient multiplier) unchanged.
        config_overrides: `ModelConfig` fields set last, e.g. `final_dropout=0.1`.
        """
        config = pretrained.config
        if isinstance(recipe, str):
            recipe = FineTuningConfig.preset(recipe, config)
        if recipe is not None:
            config = recipe.apply(config)
        config = ModelConfig.from_dict(config.to_dict() | {"vocab_size": vocab_size} | dict(config_overrides))
        # The CNN trains only if its gradient multiplier lets it (the recipes' 0 freezes it).
        model = cls(config, freeze_feature_encoder=config.feature_grad_mult == 0.0)
        model.wav2vec2.load_state_dict(pretrained.wav2vec2.state_dict())
        return model

    def set_num_updates(self, num_updates: int) -> None:
        """Tell the model how many updates have been made (it freezes the body before
        `config.freeze_finetune_updates`)."""
        self.num_updates = int(num_updates)

    @property
    def body_frozen(self) -> bool:
        """True while only the CTC head trains (`num_updates < freeze_finetune_updates`)."""
        return self.num_updates < self.config.freeze_finetune_updates

    def forward(self, waveform: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                time_mask: Tensor | None = None, output_hidden_states: bool = False) -> CTCOutput:
        """waveform (B, L) -> CTCOutput; labels (B, S) token ids, padded with -100."""
        with torch.no_grad() if self.body_frozen else contextlib.nullcontext():
            outputs = self.wav2vec2(waveform, attention_mask, time_mask, output_hidden_states=output_hidden_states)
        logits = self.lm_head(self.dropout(outputs.last_hidden_state))  # (B, T, vocab)
        batch, steps, _ = logits.shape
        if outputs.frame_mask is None:
            output_lengths = torch.full((batch,), steps, dtype=torch.long, device=logits.device)
        else:
            output_lengths = outputs.frame_mask.long().sum(dim=-1)
        loss = None
        if labels is not None:
            loss = self.ctc_loss(logits, output_lengths, labels)
        return CTCOutput(logits, output_lengths, loss, outputs.hidden_states)

    def ctc_loss(self, logits: Tensor, output_lengths: Tensor, labels: Tensor) -> Tensor:
        """CTC of logits (B, T, vocab) against labels (B, S) padded with negative ids.

        Normalised as `config.ctc_loss_reduction` says (see `config.CTC_REDUCTIONS`); the
        default "sentence" is fairseq's: the loss summed over the batch and divided by
        the number of utterances, so learning rates and gradient clipping carry over
        from fairseq's recipes.
        """
        if labels.max() >= self.config.vocab_size:
            raise ValueError(f"labels contain id {int(labels.max())}, but vocab_size is {self.config.vocab_size}")
        label_mask = labels >= 0
        target_lengths = label_mask.sum(dim=-1)
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T, B, vocab)
        reduction = self.config.ctc_loss_reduction
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN's CTC takes other inputs and rounds differently
            loss = F.ctc_loss(log_probs, labels.masked_select(label_mask), output_lengths, target_lengths,
                              blank=self.config.blank_id, reduction="mean" if reduction == "mean" else "sum",
                              zero_infinity=self.config.ctc_zero_infinity)
        if reduction == "sentence":
            return loss / labels.shape[0]
        if reduction == "token":
            return loss / target_lengths.sum().clamp(min=1)
        return loss
