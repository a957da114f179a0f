"""int8 token embeddings and LM head (issue 14 item 2): the table is stored as int8 rows with a
scale per row, a tied head is packed from the same rows, and ``build_int8`` makes a model that
never held its LM in fp32."""

from __future__ import annotations

import pytest
import torch

from octopus_ros.model import apply_precision
from octopus_ros.model.precision import (
    Int8Embedding,
    build_int8,
    decode_weight_bytes,
    module_weight_bytes,
    quantize_rows,
)
from octopus_ros.model.testing import tiny_model


@pytest.fixture(scope="module")
def model(tok):
    m = tiny_model(tok, seed=2)
    m.lm.tie_weights()  # whatever the tiny config says: the tied case is the one under test
    assert m.lm.get_output_embeddings().weight is m.lm.get_input_embeddings().weight
    return m


def test_rows_round_trip_within_half_a_step():
    w = torch.randn(300, 40) * torch.logspace(-3, 1, 300)[:, None]  # rows of very different scales
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    err = (q.float() * scale[:, None] - w).abs()
    assert (err <= 0.5 * scale[:, None] + 1e-7).all()
    emb = Int8Embedding.from_float(w, chunk=64)  # several chunks
    ids = torch.tensor([[0, 299, 150], [7, 7, 64]])
    assert torch.allclose(emb(ids), q.float()[ids] * scale[ids].unsqueeze(-1))


def test_int8_model_has_no_fp32_token_table_and_stays_close(model):
    q = apply_precision(model, precision="int8")
    emb, head = q.lm.get_input_embeddings(), q.lm.get_output_embeddings()
    assert isinstance(emb, Int8Embedding)
    assert "quantized" in type(head).__module__
    # the tied head is packed from the embedding's own int8 rows
    w = head.weight()
    assert torch.equal(w.int_repr(), emb.qweight)
    assert torch.allclose(w.q_per_channel_scales().float(), emb.scale)
    assert not any(p.numel() >= emb.qweight.numel() for p in q.parameters())  # no fp32 table left
    ids = torch.tensor([[1, 5, 9, 30]])
    with torch.no_grad():
        ref = model.lm(input_ids=ids).logits
        got = q.lm(input_ids=ids).logits
    assert (ref - got).abs().max() < 0.1 * ref.abs().max()
    assert module_weight_bytes(q.lm) < 0.4 * module_weight_bytes(model.lm)
    assert type(model.lm.get_input_embeddings()) is torch.nn.Embedding  # the fp32 model is untouched


def test_build_int8_materialises_everything_in_int8(tok):
    from octopus_ros.model import attach_tokenizer, get_model_config

    cfg = attach_tokenizer(get_model_config("octopus-tiny"), tok, 13)
    torch.manual_seed(0)
    m = build_int8(cfg.replace(lm={**cfg.lm, "vocab_size": len(tok)}))
    assert not any(t.is_meta for t in (*m.parameters(), *m.buffers()))
    assert isinstance(m.lm.get_input_embeddings(), Int8Embedding)
    assert not any(type(x) is torch.nn.Linear for x in m.lm.modules())
    assert decode_weight_bytes(m.lm) < 0.3 * 4 * sum(
        x.in_features * x.out_features for x in m.lm.modules() if hasattr(x, "in_features")
    )
    ids = torch.tensor([[m.config.image_token_id] * m.config.num_image_tokens + [5, 6]])
    with torch.no_grad():
        out = m(ids, pixel_values=torch.randn(1, 3, m.config.vision.image_size, m.config.vision.image_size))
    assert torch.isfinite(out.logits).all() and out.logits.std() > 0
    # norms and rotary tables initialised as transformers does (ones; the rope frequencies)
    norm = m.lm.model.norm.weight
    assert torch.equal(norm, torch.ones_like(norm))
    rope = m.lm.model.rotary_emb
    assert torch.isfinite(rope.inv_freq).all() and rope.inv_freq[0] == 1.0
    # an already-int8 model goes through apply_precision unchanged
    assert (
        apply_precision(m, precision="int8", inplace=True).lm.get_input_embeddings()
        is m.lm.get_input_embeddings()
    )
