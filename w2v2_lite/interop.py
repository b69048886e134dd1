"""Import trained weights from Hugging Face transformers, torchaudio and fairseq.

Each importer reads only a state dict (plus the few hyper-parameters that no weight
shape reveals, such as strides and head counts), renames its keys to w2v2_lite's
names and returns the equivalent w2v2_lite model with its `ModelConfig` inferred:

    from_transformers(hf_model)        # Wav2Vec2Model / ForPreTraining / ForCTC
    from_torchaudio(ta_model)          # torchaudio.models.Wav2Vec2Model
    load_fairseq_checkpoint(path, trust_checkpoint=True)

fairseq checkpoints are pickles that can run code when loaded, so they are only read
with `trust_checkpoint=True`; everything else goes through `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import argparse
import ast
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model

Rules = list[tuple[str, str]]


def _hf_style_rules(projection: str, transformer: str) -> Rules:
    """Regex renames onto w2v2_lite's names for the layouts of transformers and torchaudio.

    The two differ only in where the feature projection and the transformer sit:
    transformers has `feature_projection.` and `encoder.`, torchaudio
    `encoder.feature_projection.` and `encoder.transformer.`.
    """
    t = re.escape(transformer)
    return [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_encoder.conv_layers.\1.conv."),
        (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_encoder.conv_layers.\1.norm."),
        (re.escape(projection), "feature_projection."),
        (r"masked_spec_embed$", "mask_embedding"),
        (t + r"pos_conv_embed\.conv\.weight_g$", "encoder.pos_conv.conv.parametrizations.weight.original0"),
        (t + r"pos_conv_embed\.conv\.weight_v$", "encoder.pos_conv.conv.parametrizations.weight.original1"),
        (t + r"pos_conv_embed\.conv\.", "encoder.pos_conv.conv."),
        (t + r"layer_norm\.", "encoder.layer_norm."),
        (t + r"layers\.(\d+)\.attention\.(\w+_proj)\.", r"encoder.layers.\1.attention.\2."),
        (t + r"layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.attention_norm."),
        (t + r"layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.feed_forward.intermediate."),
        (t + r"layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.feed_forward.output."),
        (t + r"layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_norm."),
    ]


_TRANSFORMERS_RULES = _hf_style_rules(projection="feature_projection.", transformer="encoder.")
_TORCHAUDIO_RULES = _hf_style_rules(projection="encoder.feature_projection.", transformer="encoder.transformer.")

_FAIRSEQ_RULES: Rules = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_encoder.conv_layers.\1.conv."),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_encoder.conv_layers.\1.norm."),  # layer_norm mode
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_encoder.conv_layers.\1.norm."),  # group_norm mode
    (r"layer_norm\.", r"feature_projection.layer_norm."),
    (r"post_extract_proj\.", r"feature_projection.projection."),
    (r"mask_emb$", r"mask_embedding"),
    (r"encoder\.pos_conv\.0\.weight_g$", r"encoder.pos_conv.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v$", r"encoder.pos_conv.conv.parametrizations.weight.original1"),
    (r"encoder\.pos_conv\.0\.", r"encoder.pos_conv.conv."),
    (r"encoder\.layer_norm\.", r"encoder.layer_norm."),
    (r"encoder\.layers\.(\d+)\.self_attn\.(\w+_proj)\.", r"encoder.layers.\1.attention.\2."),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.attention_norm."),
    (r"encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.feed_forward.intermediate."),
    (r"encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.feed_forward.output."),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_norm."),
]

# Heads on top of the body: (source prefix, w2v2_lite prefix).
_PRETRAINING_HEAD_RULES: dict[str, Rules] = {
    "transformers": [(r"quantizer\.codevectors$", "quantizer.codevectors"), (r"quantizer\.weight_proj\.", "quantizer.logits."),
                     (r"project_q\.", "project_q."), (r"project_hid\.", "project_hid.")],
    "fairseq": [(r"quantizer\.vars$", "quantizer.codevectors"), (r"quantizer\.weight_proj\.", "quantizer.logits."),
                (r"project_q\.", "project_q."), (r"final_proj\.", "project_hid.")],
}


def _rename(state: Mapping[str, Tensor], body_rules: Rules, body_prefix: str, body_target: str,
            head_rules: Rules = (), ignore: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """Rename every key of `state`; a key no rule matches is an error, not dropped silently."""
    renamed: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if any(re.fullmatch(pattern, key) for pattern in ignore):
            continue
        new_key = None
        if key.startswith(body_prefix):
            rest = key[len(body_prefix):]
            for pattern, replacement in body_rules:
                if re.match(pattern, rest):
                    new_key = body_target + re.sub(pattern, replacement, rest, count=1)
                    break
        if new_key is None:
            for pattern, replacement in head_rules:
                if re.match(pattern, key):
                    new_key = re.sub(pattern, replacement, key, count=1)
                    break
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    if unknown:
        raise ValueError(f"cannot map {len(unknown)} checkpoint key(s) onto w2v2_lite: {unknown[:8]}")
    return _match_shapes(renamed)


def _match_shapes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Bring source tensors to w2v2_lite's shapes: the positional conv as a weight-norm (g, v) pair,
    also when the source folded weight norm away, and the codebook as (G*V, d)."""
    base = [k for k in state if k.endswith("encoder.pos_conv.conv.weight")]
    for key in base:
        weight = state.pop(key)
        prefix = key[: -len("weight")] + "parametrizations.weight."
        state[prefix + "original0"] = torch.linalg.vector_norm(weight, dim=(0, 1), keepdim=True)
        state[prefix + "original1"] = weight
    for key in [k for k in state if k.endswith("quantizer.codevectors")]:
        state[key] = state[key].reshape(-1, state[key].shape[-1])  # (1, G*V, d) -> (G*V, d)
    return state


def _load(model: nn.Module, state: dict[str, Tensor], source: str) -> nn.Module:
    """Strict load with an error that names the keys that did not line up.

    Only the mask embedding may be absent (torchaudio's inference models have none): it
    keeps its fresh initialisation, which matters only if the model is trained further.
    No reference implementation saves the Gumbel temperature: it starts at the
    schedule's start, and a training loop that resumes sets it from the update count.
    """
    own = model.state_dict()
    for key in own:
        if key.endswith(("mask_embedding", "quantizer.gumbel_temperature")) and key not in state:
            state[key] = own[key]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                   for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(f"{source} weights do not fit the inferred w2v2_lite model: missing {missing[:6]}, "
                         f"unexpected {unexpected[:6]}, wrong shapes {wrong_shape[:6]}")
    model.load_state_dict(state)
    return model.eval()


def _build(config: ModelConfig, state: dict[str, Tensor], source: str) -> nn.Module:
    """The w2v2_lite model that `state` describes: pretraining, CTC, or the bare encoder.

    A pretraining model with continuous targets has no quantizer, only the two projections.
    """
    if any(k.startswith(("quantizer.", "project_q.", "project_hid.")) for k in state):
        return _load(Wav2Vec2ForPreTraining(config), state, source)
    if "lm_head.weight" in state:
        return _load(Wav2Vec2ForCTC(config), state, source)
    return _load(Wav2Vec2Model(config), {k.removeprefix("wav2vec2."): v for k, v in state.items()}, source)


# ---------------------------------------------------------------- transformers
def config_from_transformers(hf_config: Any) -> ModelConfig:
    """ModelConfig equal to a `transformers.Wav2Vec2Config`."""
    c = hf_config
    return ModelConfig(
        conv_layers=tuple(zip(c.conv_dim, c.conv_kernel, c.conv_stride)),
        extractor_mode="layer_norm" if c.feat_extract_norm == "layer" else "group_norm",
        conv_bias=c.conv_bias, hidden_size=c.hidden_size, num_layers=c.num_hidden_layers,
        num_heads=c.num_attention_heads, ffn_size=c.intermediate_size, layer_norm_first=c.do_stable_layer_norm,
        pos_conv_kernel=c.num_conv_pos_embeddings, pos_conv_groups=c.num_conv_pos_embedding_groups,
        layer_norm_eps=c.layer_norm_eps, dropout=c.hidden_dropout, attention_dropout=c.attention_dropout,
        activation_dropout=c.activation_dropout, dropout_input=c.feat_proj_dropout,
        dropout_features=c.feat_quantizer_dropout, layerdrop=c.layerdrop, final_dropout=c.final_dropout,
        mask_time_prob=c.mask_time_prob, mask_time_length=c.mask_time_length,
        mask_time_min_masks=c.mask_time_min_masks, mask_channel_prob=c.mask_feature_prob,
        mask_channel_length=c.mask_feature_length, mask_channel_min_masks=c.mask_feature_min_masks,
        num_code_groups=c.num_codevector_groups, num_codes_per_group=c.num_codevectors_per_group,
        codevector_dim=c.codevector_dim, final_dim=c.proj_codevector_dim, num_negatives=c.num_negatives,
        logit_temperature=c.contrastive_logits_temperature, diversity_weight=c.diversity_loss_weight,
        feature_penalty_weight=0.0,  # transformers has no feature penalty
        feature_grad_mult=1.0,
        vocab_size=c.vocab_size, blank_id=c.pad_token_id if c.pad_token_id is not None else 0,
        ctc_zero_infinity=c.ctc_zero_infinity, ctc_loss_reduction=c.ctc_loss_reduction,
    )


def from_transformers(hf_model: nn.Module) -> nn.Module:
    """The w2v2_lite twin of a transformers Wav2Vec2Model, Wav2Vec2ForPreTraining or Wav2Vec2ForCTC."""
    state = hf_model.state_dict()
    config = config_from_transformers(hf_model.config)
    prefix = "wav2vec2." if any(k.startswith("wav2vec2.") for k in state) else ""
    head_rules = _PRETRAINING_HEAD_RULES["transformers"] + [(r"lm_head\.", "lm_head.")]
    renamed = _rename(state, _TRANSFORMERS_RULES, prefix, "wav2vec2.", head_rules)
    return _build(config, renamed, type(hf_model).__name__)


# ------------------------------------------------------------------ torchaudio
def from_torchaudio(ta_model: nn.Module) -> nn.Module:
    """The w2v2_lite twin of a `torchaudio.models.Wav2Vec2Model` (an encoder, or CTC with `aux`)."""
    extractor = ta_model.feature_extractor.conv_layers
    transformer = ta_model.encoder.transformer
    first_layer = transformer.layers[0]
    pos_conv = transformer.pos_conv_embed.conv
    second_norm = extractor[1].layer_norm if len(extractor) > 1 else None
    aux = getattr(ta_model, "aux", None)
    config = ModelConfig(
        conv_layers=tuple((b.conv.out_channels, b.conv.kernel_size[0], b.conv.stride[0]) for b in extractor),
        extractor_mode="layer_norm" if second_norm is not None or isinstance(extractor[0].layer_norm, nn.LayerNorm)
        else "group_norm",
        conv_bias=extractor[0].conv.bias is not None,
        hidden_size=ta_model.encoder.feature_projection.projection.out_features,
        num_layers=len(transformer.layers), num_heads=first_layer.attention.num_heads,
        ffn_size=first_layer.feed_forward.intermediate_dense.out_features,
        layer_norm_first=first_layer.layer_norm_first,
        pos_conv_kernel=pos_conv.kernel_size[0], pos_conv_groups=pos_conv.groups,
        feature_grad_mult=1.0, vocab_size=aux.out_features if aux is not None else ModelConfig.vocab_size,
    )
    head_rules = [(r"aux\.", "lm_head.")]
    renamed = _rename(ta_model.state_dict(), _TORCHAUDIO_RULES, "", "wav2vec2.", head_rules)
    return _build(config, renamed, "torchaudio Wav2Vec2Model")


# --------------------------------------------------------------------- fairseq
class _Stub:
    """Stands in for a class from a package that is not installed (fairseq, omegaconf)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _TolerantUnpickler(pickle.Unpickler):
    """Unpickles fairseq checkpoints without fairseq: unknown classes become `_Stub`s."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Stub,), {"__module__": module})


class _TolerantPickleModule:
    Unpickler = _TolerantUnpickler
    load = staticmethod(pickle.load)
    __name__ = "w2v2_lite_tolerant_pickle"


def _plain(value: Any) -> Any:
    """Turn Namespaces, omegaconf DictConfig stubs and nested containers into plain dicts."""
    if isinstance(value, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(value).items()}
    if isinstance(value, _Stub):
        state = value.state if value.state is not None else {}
        if isinstance(state, dict) and "_content" in state:
            return _plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:
            return _plain(state["_val"])
        return _plain(state)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# A fine-tuned (wav2vec_ctc) model overrides these fields of the pretrained body with
# its own; where its config leaves one out, fairseq's Wav2Vec2AsrConfig default holds.
# (name in the fine-tuning config, name in the body's config, Wav2Vec2AsrConfig default)
_FINETUNING_OVERRIDES = (
    ("dropout", "dropout", 0.0), ("attention_dropout", "attention_dropout", 0.0),
    ("activation_dropout", "activation_dropout", 0.0), ("dropout_input", "dropout_input", 0.0),
    ("mask_length", "mask_length", 10), ("mask_prob", "mask_prob", 0.5),
    ("mask_channel_length", "mask_channel_length", 10), ("mask_channel_prob", "mask_channel_prob", 0.0),
    ("layerdrop", "encoder_layerdrop", 0.0), ("feature_grad_mult", "feature_grad_mult", 0.0),
)


def _finetuned_body_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The body's config of a fine-tuned model, with the fine-tuning values in force.

    fairseq builds the fine-tuned body from the pretraining config (`w2v_args`) and
    overrides its dropout, masking, LayerDrop and gradient multiplier with the
    fine-tuning ones (`Wav2VecEncoder`); without `apply_mask` nothing is masked.
    """
    inner = cfg["w2v_args"]
    inner = inner.get("model", inner) if isinstance(inner, Mapping) else vars(inner)
    body = dict(inner)
    for outer_name, body_name, default in _FINETUNING_OVERRIDES:
        value = cfg.get(outer_name)
        body[body_name] = default if value is None else value
    if not cfg.get("apply_mask", False):
        body["mask_prob"], body["mask_channel_prob"] = 0.0, 0.0
    body["final_dropout"] = cfg.get("final_dropout", 0.0) or 0.0
    body["freeze_finetune_updates"] = cfg.get("freeze_finetune_updates", 0) or 0
    return body


def config_from_fairseq(model_cfg: Mapping[str, Any], sentence_avg: bool = True) -> ModelConfig:
    """ModelConfig from a fairseq `cfg.model` (or legacy `args`) of a wav2vec 2.0 model.

    For a fine-tuned model the architecture comes from its pretraining config and the
    regularisation (dropout, masking, LayerDrop, gradient multiplier, freezing) from its
    fine-tuning config, as fairseq does. sentence_avg: the checkpoint's
    `optimization.sentence_avg`, which decides how its CTC loss was normalised.
    """
    cfg = dict(model_cfg)
    if cfg.get("w2v_args"):  # fine-tuned: the body's config is nested inside
        cfg = _finetuned_body_config(cfg)
    conv_layers = cfg.get("conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2")
    conv_layers = _parse_conv_layers(conv_layers) if isinstance(conv_layers, str) else conv_layers
    get = cfg.get
    latent_dim = get("latent_dim", 0) or get("final_dim", 256)
    return ModelConfig(
        conv_layers=tuple(tuple(layer) for layer in conv_layers),
        extractor_mode="layer_norm" if get("extractor_mode", "default") == "layer_norm" else "group_norm",
        conv_bias=bool(get("conv_bias", False)), feature_grad_mult=float(get("feature_grad_mult", 0.1)),
        hidden_size=get("encoder_embed_dim", 768), num_layers=get("encoder_layers", 12),
        num_heads=get("encoder_attention_heads", 12), ffn_size=get("encoder_ffn_embed_dim", 3072),
        layer_norm_first=bool(get("layer_norm_first", False)),
        pos_conv_kernel=get("conv_pos", 128), pos_conv_groups=get("conv_pos_groups", 16),
        dropout=get("dropout", 0.1), attention_dropout=get("attention_dropout", 0.1),
        activation_dropout=get("activation_dropout", 0.0), dropout_input=get("dropout_input", 0.1),
        dropout_features=get("dropout_features", 0.1), layerdrop=get("encoder_layerdrop", 0.05),
        mask_time_prob=get("mask_prob", 0.65), mask_time_length=get("mask_length", 10),
        mask_channel_prob=get("mask_channel_prob", 0.0), mask_channel_length=get("mask_channel_length", 10),
        num_code_groups=get("latent_groups", 2), num_codes_per_group=get("latent_vars", 320),
        codevector_dim=latent_dim, final_dim=get("final_dim", 256) or 256, num_negatives=get("num_negatives", 100),
        cross_sample_negatives=get("cross_sample_negatives", 0), logit_temperature=get("logit_temp", 0.1),
        gumbel_temperature=tuple(_parse_tuple(get("latent_temp", (2.0, 0.5, 0.999995)))),
        quantize_targets=bool(get("quantize_targets", True)),
        feature_penalty_weight=0.0 if bool(get("layer_norm_first", False)) else 10.0,
        final_dropout=get("final_dropout", 0.0), freeze_finetune_updates=int(get("freeze_finetune_updates", 0)),
        ctc_loss_reduction="sentence" if sentence_avg else "token",
    )


def _parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's conv spec, e.g. "[(512, 10, 5)] + [(512, 3, 2)] * 4", without eval()."""
    layers: list[tuple[int, int, int]] = []
    for term in text.replace(" ", "").split("+"):
        times = 1
        if "]*" in term:
            term, count = term.rsplit("*", 1)
            times = int(count)
        layers.extend(list(ast.literal_eval(term)) * times)
    return layers


def _parse_tuple(value: Any) -> tuple[float, ...]:
    return tuple(ast.literal_eval(value)) if isinstance(value, str) else tuple(value)


def load_fairseq_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> nn.Module:
    """Load a fairseq wav2vec 2.0 checkpoint (pretrained or CTC fine-tuned) into w2v2_lite.

    fairseq checkpoints pickle their configuration (argparse Namespaces, omegaconf
    objects), and unpickling can run arbitrary code: pass `trust_checkpoint=True` only
    for files from a source you trust. fairseq itself need not be installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fairseq checkpoint at {path}")
    if not trust_checkpoint:
        raise ValueError(f"{path} is a fairseq checkpoint: loading it unpickles Python objects, which can run "
                         "code. If you trust its source, call load_fairseq_checkpoint(path, trust_checkpoint=True).")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False,
                            pickle_module=_TolerantPickleModule)  # type: ignore[arg-type]
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"{path} is not a fairseq checkpoint: it has no 'model' state dict")
    state: dict[str, Tensor] = checkpoint["model"]
    cfg = _plain(checkpoint.get("cfg")) or {}
    model_cfg = cfg.get("model") if isinstance(cfg, Mapping) and cfg.get("model") else _plain(checkpoint.get("args"))
    if not model_cfg:
        raise ValueError(f"{path} holds neither cfg['model'] nor args: cannot tell the architecture")
    optimization = cfg.get("optimization") if isinstance(cfg, Mapping) else None
    # Hydra checkpoints keep it under optimization; legacy ones in the flat args.
    sentence_avg = (optimization if isinstance(optimization, Mapping) else model_cfg).get("sentence_avg", True)
    config = config_from_fairseq(model_cfg, sentence_avg=bool(sentence_avg))
    if any(k.startswith("w2v_encoder.") for k in state):  # fine-tuned for CTC
        vocab = state["w2v_encoder.proj.weight"].shape[0]
        config = ModelConfig.from_dict(config.to_dict() | {"vocab_size": vocab, "blank_id": 0})
        head_rules = [(r"w2v_encoder\.proj\.", "lm_head.")]
        # The fine-tuned body may still carry the pretraining heads; CTC does not use them.
        renamed = _rename(state, _FAIRSEQ_RULES, "w2v_encoder.w2v_model.", "wav2vec2.", head_rules,
                          ignore=(r"w2v_encoder\.w2v_model\.(quantizer|project_q|final_proj)\..*",))
    else:
        renamed = _rename(state, _FAIRSEQ_RULES, "", "wav2vec2.", _PRETRAINING_HEAD_RULES["fairseq"])
        # The weights decide whether targets were quantized: `quantize_targets: false` saves no
        # quantizer, and its project_q reads the latents (conv_dim -> final_dim), not codevectors.
        quantized = any(k.startswith("quantizer.") for k in renamed)
        config = ModelConfig.from_dict(config.to_dict() | {"quantize_targets": quantized})
    return _build(config, renamed, f"fairseq checkpoint {path}")
