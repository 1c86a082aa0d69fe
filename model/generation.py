"""Greedy decoding with a KV cache that also returns the hidden state behind every token.

GeoPix needs the hidden state that *predicted* each emitted ``[SEG*]`` token, which
``generate()`` only exposes through a very large output structure; a 30-line loop that keeps
exactly those states is simpler and lets the image prefix cache be passed in ready-made.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from .llm import decoder_forward

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: ``(generated_ids [N, t], logits [N, V]) -> logits``; e.g. to force or ban tokens.
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def greedy_decode(llm: "PreTrainedModel", inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                  past_key_values: Any, max_new_tokens: int, eos_id: int,
                  logits_processor: LogitsProcessor | None = None) -> tuple[list[list[int]], torch.Tensor]:
    """Decode ``N`` unpadded sequences in lockstep.

    ``inputs_embeds [N, L, D]`` continue ``past_key_values`` (may be ``None``) and
    ``attention_mask [N, past + L]``. Returns per-row token ids (up to and including EOS) and
    hidden states ``[N, T, D]``: ``hidden[:, t]`` is the last-layer state whose logits chose
    token ``t``.
    """
    embed = llm.get_input_embeddings()
    head = llm.get_output_embeddings()
    n = inputs_embeds.shape[0]
    hidden, past = decoder_forward(llm, inputs_embeds, attention_mask, past_key_values, use_cache=True)
    last = hidden[:, -1]
    generated = torch.zeros((n, 0), dtype=torch.long, device=inputs_embeds.device)
    states = []
    done = torch.zeros(n, dtype=torch.bool, device=inputs_embeds.device)
    for _ in range(max_new_tokens):
        logits = head(last).float()
        if logits_processor is not None:
            logits = logits_processor(generated, logits)
        tok = logits.argmax(-1)
        tok = torch.where(done, torch.full_like(tok, eos_id), tok)
        generated = torch.cat([generated, tok[:, None]], 1)
        states.append(last)
        done |= tok == eos_id
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], 1)
        hidden, past = decoder_forward(llm, embed(tok[:, None]), attention_mask, past, use_cache=True)
        last = hidden[:, -1]
    out: list[list[int]] = []
    for row in generated.tolist():
        out.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    hid = torch.stack(states, 1) if states else inputs_embeds.new_zeros((n, 0, inputs_embeds.shape[-1]))
    return out, hid
