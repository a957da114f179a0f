"""octopus_finetune keeps what still holds of its base (training/carry.py): the grounding head
while the vision tower is frozen, the training vocabulary grown by the fine-tuning text, the
image profile while tower and connector are frozen; a stale span copier is never copied."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from octopus_ros.functions import load_default_registry
from octopus_ros.lean.novelty import TextNovelty
from octopus_ros.training.carry import carry_over


@pytest.fixture
def base(tmp_path):
    d = tmp_path / "base"
    d.mkdir()
    (d / "grounding.json").write_text('{"format": "octopus_ros.grounding"}')
    (d / "grounding.safetensors").write_bytes(b"head")
    (d / "image_profile.safetensors").write_bytes(b"profile")
    (d / "span_copier.safetensors").write_bytes(b"stale copier")
    TextNovelty(["pick", "up", "the", "cup", "杯"]).save(d / "training_vocab.json")
    return d


def _carry(base, out, **kw):
    out.mkdir()
    args = dict(
        model=None,
        registry=load_default_registry(),
        texts=["switch the kitchen light off", "把灯关掉"],
        images=lambda: [np.zeros((8, 8, 3), np.uint8)] * 3,
        vision_trained=False,
        connector_trained=False,
        copier_steps=0,
    )
    args.update(kw)
    return carry_over(base, out, **args)


def test_frozen_tower_keeps_grounding_and_profile_and_grows_the_vocabulary(base, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        done = _carry(base, out)
    assert (out / "grounding.safetensors").read_bytes() == b"head"
    assert (out / "grounding.json").is_file()
    assert (out / "image_profile.safetensors").read_bytes() == b"profile"
    vocab = TextNovelty.load(out / "training_vocab.json")
    assert vocab.score("pick up the cup") == 0.0
    assert vocab.score("switch the kitchen light off") == 0.0 and vocab.score("把灯关掉") == 0.0
    assert vocab.score("dance now") == 1.0
    # the copier read the base's weights: never copied, and the user is told how to retrain it
    assert not (out / "span_copier.safetensors").exists()
    assert done["span_copier"].startswith("dropped") and "span_copier" in caplog.text
    assert set(done) == {"grounding", "text_vocabulary", "image_profile", "span_copier"}


def test_trained_tower_drops_grounding_and_what_cannot_be_refitted(base, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        done = _carry(base, out, vision_trained=True, connector_trained=True)
    assert not (out / "grounding.safetensors").exists() and not (out / "grounding.json").exists()
    assert (
        done["grounding"].startswith("dropped") and "python -m octopus_ros.training.grounding" in caplog.text
    )
    assert not (out / "image_profile.safetensors").exists()  # 3 images: too few to refit
    assert done["image_profile"].startswith("dropped")


def test_a_model_built_from_parts_has_nothing_to_carry(tmp_path):
    assert _carry(None, tmp_path / "out") == {}


def test_a_trained_connector_gets_an_image_profile_refitted_on_the_finetuning_images(base, tmp_path):
    from octopus_ros.model import load_checkpoint
    from octopus_ros.model.novelty import ImageNovelty
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path

    model = load_checkpoint(
        make_tiny_checkpoint(tmp_path / "tiny", config_path("functions.yaml"), image_size=32)
    ).model
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(220)]
    out = tmp_path / "out"
    done = _carry(base, out, model=model, images=lambda: pictures + pictures, connector_trained=True)
    assert done["image_profile"] == "refitted on 220 fine-tuning images"  # the same image counts once
    assert (out / "image_profile.safetensors").read_bytes() != b"profile"
    ImageNovelty.load(out / "image_profile.safetensors")
    assert (out / "grounding.safetensors").is_file()  # the tower itself stayed frozen


def test_a_request_profile_is_refitted_on_the_finetuned_model_or_dropped_by_name(
    base, tmp_path, caplog, monkeypatch
):
    """Any fine-tune moves the LM's hidden states: the base's request profile is never copied. It
    is refitted with message bodies varied as stage 4 varies them, when bodies are given."""
    import octopus_ros.training.novelty_profile as novelty_profile
    from octopus_ros.data import generate
    from octopus_ros.lean.novelty import DECLINE_CORPUS_CLASS, REQUEST_PROFILE_FILE, RequestProfile
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path

    (base / REQUEST_PROFILE_FILE).write_bytes(b"the base's profile")
    for name in ("image_profile.safetensors", "grounding.json", "grounding.safetensors"):
        (base / name).unlink()  # the fixture's stand-ins, which the node could not load
    requests = [
        {"instruction": ex.instruction, "answer": ex.answer, "image": ex.image, "language": ex.language}
        for ex in generate("train", 120, 5, image_size=32)
    ]
    requests += [
        {
            "instruction": s,
            "answer": "<nexa_12>()<nexa_end>",
            "image": requests[0]["image"],
            "class": DECLINE_CORPUS_CLASS,
        }
        for s in ("the sea was calm", "谢谢，就这样")
    ]
    out = make_tiny_checkpoint(tmp_path / "out", config_path("functions.yaml"), image_size=32)
    varied = []
    real = novelty_profile.with_new_bodies

    def spy(records, registry, bodies, share, seed=0):
        varied.append(real(records, registry, bodies, share, seed))
        return varied[-1]

    monkeypatch.setattr(novelty_profile, "with_new_bodies", spy)
    bodies = {"en": ["the kettle is on"], "zh": ["水开了"]}
    done = carry_over(
        base,
        out,
        model=None,
        registry=load_default_registry(),
        texts=[],
        images=list,
        vision_trained=False,
        connector_trained=False,
        copier_steps=0,
        requests=lambda: requests,
        message_bodies=lambda: bodies,
        message_share=1.0,
    )
    assert done["request_profile"].startswith("refitted on the fine-tuned model")
    messages = [r for r in varied[0] if r["answer"].startswith("<nexa_10>")]  # send_message
    assert messages and all(
        any(b in r["instruction"] for b in ("the kettle is on", "水开了")) for r in messages
    )
    assert DECLINE_CORPUS_CLASS in RequestProfile.load(out / REQUEST_PROFILE_FILE).classes
    out2 = tmp_path / "out2"
    with caplog.at_level(logging.WARNING):
        done = _carry(base, out2)  # no requests given
    assert done["request_profile"].startswith("dropped") and "request novelty" in caplog.text
    assert not (out2 / REQUEST_PROFILE_FILE).exists()


def test_the_span_copier_is_carried_over_while_the_embeddings_it_reads_are_unchanged(tmp_path):
    """The copier reads only the LM's input embeddings: a LoRA fine-tune leaves the base's rows
    as they were, so the base's copier is carried, bound to the new weights (the node uses it);
    once a row of the base's tokens changed it is not (retrained, or dropped by name)."""
    import json
    import shutil

    import torch

    from octopus_ros.lean.copier import COPIER_FILE, SpanCopier, copier_weights_sha
    from octopus_ros.model import load_checkpoint
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path
    from octopus_ros.training.span_copier import train

    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"), image_size=32)
    train(base, steps=2, n_train=40, n_val=20, progress=False)

    def saved_as_other_weights(name):  # a copy of the base whose config records other weights
        out = tmp_path / name
        shutil.copytree(base, out)
        (out / COPIER_FILE).unlink()
        config = json.loads((out / "config.json").read_text())
        config["weights"]["sha256"] = name[0] * 64
        (out / "config.json").write_text(json.dumps(config))
        return out

    model = load_checkpoint(base).model
    table = model.lm.get_input_embeddings().weight
    with torch.no_grad():  # a new functional token: one row more, the others untouched
        model.lm.resize_token_embeddings(table.shape[0] + 1)
    out = saved_as_other_weights("a")
    done = carry_over(
        base, out, model=model, registry=load_default_registry(), texts=[], images=list,
        vision_trained=False, connector_trained=False, copier_steps=0,
    )  # fmt: skip
    assert done["span_copier"] == "carried over (the input embeddings it reads are unchanged)"
    carried = SpanCopier.load(out, weights_sha256=copier_weights_sha(out))
    original = SpanCopier.load(base)
    assert carried is not None and carried.meta["weights_sha256"] == "a" * 64
    assert carried.meta["carried_from_weights_sha256"] == original.meta["weights_sha256"]
    assert all(np.array_equal(carried.t[k], original.t[k]) for k in original.t)

    with torch.no_grad():
        model.lm.get_input_embeddings().weight[7] += 0.5  # a row of the base's tokens moved
    out = saved_as_other_weights("b")
    done = carry_over(
        base, out, model=model, registry=load_default_registry(), texts=[], images=list,
        vision_trained=False, connector_trained=False, copier_steps=0,
    )  # fmt: skip
    assert done["span_copier"].startswith("dropped") and not (out / COPIER_FILE).exists()
