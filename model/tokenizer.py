"""Offline tokenizers with GeoPix's special tokens.

Nothing here may touch a hub: tests and air-gapped deployments must build the exact same
tokenizer from what is on disk. Two sources are supported:

* the tiny preset trains a small byte-level BPE with ``tokenizers`` on a built-in
  remote-sensing corpus. Training is single-pass and deterministic, so two processes that
  build ``GeoPixConfig.tiny()`` agree on every token id (checkpoints still ship their own
  ``tokenizer.json``, so this is a convenience, not a correctness requirement);
* real LLMs bring their own tokenizer directory, which we load with
  ``local_files_only=True`` and extend with the special tokens.

Special tokens are *added* tokens, so a placeholder written in text ("region1 <mask><pos>")
always maps to one id and can be found and replaced in the embedding sequence.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers' tokenizer stack is imported only when one is built
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
MASK_TOKEN = "<mask>"
POS_TOKEN = "<pos>"
PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"


def seg_tokens(num_scales: int = 2, tokens_per_scale: int = 3) -> list[str]:
    """Names of the segmentation tokens, scale-major: [SEG0]..[SEG{n-1}]."""
    return [f"[SEG{i}]" for i in range(num_scales * tokens_per_scale)]


def special_tokens(num_scales: int = 2, tokens_per_scale: int = 3) -> list[str]:
    """Every added token the model relies on, in a fixed order."""
    return [IMAGE_TOKEN, *seg_tokens(num_scales, tokens_per_scale), MASK_TOKEN, POS_TOKEN]


#: A Vicuna-style single-line template (LLaVA/LISA/Osprey lineage). The processor builds the
#: same text piece by piece, so rendering this template and tokenizing gives the same ids.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER: {{ m['content'] }} ASSISTANT:"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)

_CLASSES = (
    "building buildings house houses roof roofs road roads street highway bridge bridges "
    "water river rivers lake lakes sea ocean coast shoreline harbour harbor port pier dock "
    "ship ships boat boats vessel vehicle vehicles car cars truck trucks bus parking lot "
    "airplane airplanes aircraft airport runway taxiway helipad helicopter storage tank tanks "
    "oil container containers crane cranes tower towers chimney stadium field fields "
    "court courts tennis basketball baseball diamond ground track football soccer pool "
    "swimming golf course forest tree trees vegetation grass grassland farmland cropland crop "
    "crops agriculture orchard vineyard meadow pasture shrub bare soil sand desert dune rock "
    "mountain hill valley snow ice glacier cloud clouds shadow wetland marsh mangrove beach "
    "industrial residential commercial urban rural village city town dam reservoir canal "
    "railway station train rail windmill wind turbine solar panel panels greenhouse "
    "roundabout intersection overpass interchange expressway toll gate service area "
    "background other unknown region object area"
)
_SENTENCES = (
    "Please segment the {c} in this image.",
    "Sure, it is [SEG0][SEG1][SEG2][SEG3][SEG4][SEG5].",
    "Where are the {c}? The {c} are located near the {d}.",
    "What is in region1 <mask><pos>? It is a {c}.",
    "Describe region2 <mask><pos> briefly. A small {c} next to a {d}.",
    "There are several {c} in the upper left of the scene, close to the {d}.",
    "The satellite image shows {c} and {d} in the lower right corner.",
    "How many {c} can you see? I can see three {c} along the {d}.",
    "This aerial photo of an {c} area contains {d} and {c}.",
    "Is there any {c}? Yes, there is one {c} at the center, north of the {d}.",
)


def _corpus() -> list[str]:
    words = _CLASSES.split()
    lines = []
    for i, c in enumerate(words):
        d = words[(i * 7 + 3) % len(words)]
        for s in _SENTENCES:
            lines.append(s.format(c=c, d=d))
    lines.extend(f"USER: <image>\n{l} ASSISTANT: {l}" for l in lines[: len(_SENTENCES) * 8])
    lines.extend(["left right top bottom upper lower middle center north south east west",
                  "0 1 2 3 4 5 6 7 8 9 10 100 meters km pixels percent , . ? ! : ; ( ) - ' \""])
    return lines


@functools.lru_cache(maxsize=4)
def _train_bpe_json(vocab_size: int, specials: tuple[str, ...]) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, *specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def build_tiny_tokenizer(vocab_size: int = 1024, num_scales: int = 2,
                         tokens_per_scale: int = 3) -> "PreTrainedTokenizerFast":
    """Train (or fetch from the in-process cache) the built-in byte-level BPE."""
    specials = tuple(special_tokens(num_scales, tokens_per_scale))
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_str(_train_bpe_json(vocab_size, specials))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN, additional_special_tokens=list(specials),
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_local_tokenizer(path: str | Path, num_scales: int = 2,
                         tokens_per_scale: int = 3) -> "PreTrainedTokenizerBase":
    """Load a tokenizer directory from disk only and make sure the special tokens exist.

    Refuses directories whose ``tokenizer_config.json`` asks for custom code: loading it
    would mean executing files that came with a download.
    """
    from geopix_tiles.errors import InputError
    from transformers import AutoTokenizer

    path = Path(path)
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"tokenizer config {cfg} is not valid JSON ({exc}); re-save the tokenizer") from exc
        if isinstance(data, dict) and ("auto_map" in data or data.get("trust_remote_code")):
            raise InputError(f"tokenizer in {path} asks for custom code (auto_map); use a tokenizer "
                             "that ships tokenizer.json and needs no remote code")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types for a bad directory
        raise InputError(f"cannot load a tokenizer from {path} ({type(exc).__name__}: {exc}); "
                         "point to a directory with tokenizer.json") from exc
    specials = special_tokens(num_scales, tokens_per_scale)
    missing = [t for t in specials if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False) \
            if _supports_replace_flag(tok) else tok.add_special_tokens({"additional_special_tokens": missing})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else PAD_TOKEN
    # GeoPix is tuned on the processor's Vicuna-style layout, whatever the base LLM used
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _supports_replace_flag(tok: "PreTrainedTokenizerBase") -> bool:
    import inspect

    return "replace_extra_special_tokens" in inspect.signature(tok.add_special_tokens).parameters
