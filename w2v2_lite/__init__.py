"""w2v2_lite: wav2vec 2.0 from scratch, box by box, equal to the reference implementations.

Modules follow the boxes of the paper's figure:

- `config`: `ModelConfig` with the `tiny`, `base` and `large` presets
- `feature_encoder`: the CNN from waveform X to latents Z
- `context_network`: positional convolution and Transformer, Z -> context C
- `masking`: span masking of the latents
- `quantizer`: Gumbel product quantizer, Z -> targets Q
- `negatives`: distractor sampling
- `losses`: contrastive, diversity and feature-penalty terms
- `models`: `Wav2Vec2Model`, `Wav2Vec2ForPreTraining`, `Wav2Vec2ForCTC`
- `interop`: import of transformers, torchaudio and fairseq checkpoints

Importing the package is cheap: names are loaded from their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "config",
    "FeatureEncoder": "feature_encoder",
    "TransformerEncoder": "context_network",
    "span_mask": "masking",
    "GumbelVectorQuantizer": "quantizer",
    "sample_negatives": "negatives",
    "Wav2Vec2Model": "models",
    "Wav2Vec2ForPreTraining": "models",
    "Wav2Vec2ForCTC": "models",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .config import ModelConfig
    from .context_network import TransformerEncoder
    from .feature_encoder import FeatureEncoder
    from .masking import span_mask
    from .models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model
    from .negatives import sample_negatives
    from .quantizer import GumbelVectorQuantizer


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
