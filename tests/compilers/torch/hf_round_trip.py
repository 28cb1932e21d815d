"""What the import-hf and export-hf tests compare: the spec's logits and transformers' on one right-padded batch.

A plain module (not conftest) so both test files import it by a unique name."""

from __future__ import annotations

import torch


def padded_batch(vocab: int, length: int, real: int, pad: int = 0, seed: int = 3):
    """(ids [2, length], attention mask): the second row right-padded with ``pad`` after ``real`` tokens (no real
    token is ``pad``)."""
    ids = torch.randint(pad + 1, vocab, (2, length), generator=torch.Generator().manual_seed(seed))
    ids[1, real:] = pad
    return ids, (torch.arange(length)[None] < torch.tensor([[length], [real]])).long()


def outputs(kind: str, model, hf, ids, mask):
    """(the spec's, transformers') logits for a family ``kind`` (t5*, roberta, roberta_mlm, bert*, else a causal
    LM): T5 decodes the first row's tokens for both padded sources; RobertaModel's are its hidden states after the
    pooler output (its <s> state, real in both rows), so row 1's real positions are 0..real."""
    with torch.no_grad():
        if kind.startswith("t5"):
            tgt = ids[:1].expand(2, -1)
            return model(ids, mask.sum(1), tgt), hf(input_ids=ids, attention_mask=mask, decoder_input_ids=tgt).logits
        want = hf(input_ids=ids, attention_mask=mask)
        if kind == "roberta":
            ours = model(ids)
            return (torch.cat([ours["pooler_output"][:, None], ours["last_hidden_state"]], 1),
                    torch.cat([want.pooler_output[:, None], want.last_hidden_state], 1))
        if kind == "roberta_mlm":  # its padding comes from the tokens
            return model(ids)["logits"], want.logits
        if kind.startswith("bert"):
            return model(ids, torch.zeros_like(ids), mask.sum(1))["logits"], want.logits
        return model(ids), want.logits
