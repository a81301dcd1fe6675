"""Tiny random-init Hugging Face transformers and token data for the transformer tests (importable
by Ray workers as ``tests.transformer_models:NAME``). Small widths, short sequences: seconds each."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

VOCAB, SEQ = 64, 16


def bert():
    import transformers as T

    torch.manual_seed(0)
    c = T.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, num_labels=3, max_position_embeddings=SEQ)
    return T.BertForSequenceClassification(c).eval()


def gpt2():
    import transformers as T

    torch.manual_seed(0)
    c = T.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=SEQ, bos_token_id=0,
                     eos_token_id=0)
    return T.GPT2LMHeadModel(c).eval()


def llama():
    """Grouped-query attention: 4 query heads share 2 key/value heads."""
    import transformers as T

    torch.manual_seed(0)
    c = T.LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=SEQ)
    return T.LlamaForCausalLM(c).eval()


def classification_data() -> tuple[TensorDataset, TensorDataset]:
    """Token sequences labelled by which third of the vocabulary holds most of their tokens."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (240, SEQ), generator=g)
    y = torch.stack([(x < VOCAB // 3).sum(1), ((x >= VOCAB // 3) & (x < 2 * VOCAB // 3)).sum(1),
                     (x >= 2 * VOCAB // 3).sum(1)], 1).argmax(1)
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])


def language_data() -> tuple[TensorDataset, TensorDataset]:
    """Counting sequences (each token the one before plus a step): next tokens a tiny model can learn.
    The targets are the inputs (``lm_cross_entropy`` and ``next_token_top1`` shift them)."""
    g = torch.Generator().manual_seed(0)
    start = torch.randint(0, VOCAB, (240, 1), generator=g)
    step = torch.randint(1, 4, (240, 1), generator=g)
    x = (start + step * torch.arange(SEQ)) % VOCAB
    return TensorDataset(x[:192], x[:192]), TensorDataset(x[192:], x[192:])


def vit():
    """A vision transformer: its input is pixel values (``main_input_name``), not token ids."""
    import transformers as T

    torch.manual_seed(0)
    c = T.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, num_labels=3)
    return T.ViTForImageClassification(c).eval()


def gpt_neox():
    """GPT-NeoX: q, k and v fused in one projection, laid out head by head."""
    import transformers as T

    torch.manual_seed(0)
    c = T.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=SEQ)
    return T.GPTNeoXForCausalLM(c).eval()


class NamedInputs(torch.utils.data.Dataset):
    """Samples as a tokenizer gives them: ({"input_ids", "attention_mask"}, label)."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
        self.ids, self.mask, self.y = ids, mask, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.y[i]


def padded_classification_data() -> tuple[NamedInputs, NamedInputs]:
    """``classification_data``'s task on sequences of 4..SEQ tokens, padded with id 0 to SEQ: the
    attention mask says which tokens are real (padding read as tokens would change the label's evidence)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, VOCAB, (240, SEQ), generator=g)
    lengths = torch.randint(4, SEQ + 1, (240,), generator=g)
    mask = (torch.arange(SEQ) < lengths[:, None]).long()
    x = x * mask  # padding: id 0
    real = lambda lo, hi: (((x >= lo) & (x < hi)) & mask.bool()).sum(1)
    y = torch.stack([real(1, VOCAB // 3), real(VOCAB // 3, 2 * VOCAB // 3), real(2 * VOCAB // 3, VOCAB)], 1).argmax(1)
    return NamedInputs(x[:192], mask[:192], y[:192]), NamedInputs(x[192:], mask[192:], y[192:])
