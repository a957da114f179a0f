"""The JSON-text answer baseline and the connector option of train_all (issue 14 item 6).

- every function's answers written as JSON text parse back to the same call (round trip), with no
  functional token in them, and the decline is the decline function's JSON call;
- a tiny json-format training run teaches JSON answers (the answer tokens of its call records hold
  no functional token and parse back to the record's call), records the format in the checkpoint,
  and the evaluation decodes such a model freely (decode mode plain);
- a JSON checkpoint is refused by the node's check in any decode mode but plain;
- ``--connector perceiver`` builds a Perceiver with as many latents as the MLP's image tokens;
- train_all trains the span copier last, into the output, tied to the final weights (functional
  models only: a JSON model gets none).
"""

from __future__ import annotations

import json

import pytest

from octopus_ros.functions import load_default_registry, parse_call
from octopus_ros.functions.answer_format import (
    AnswerFormatError,
    check_decode_mode,
    checkpoint_answer_format,
    convert_answer,
    parse_answer,
)
from octopus_ros.lean.copier import COPIER_FILE
from octopus_ros.training.span_copier import DEFAULT_STEPS as COPIER_STEPS


@pytest.fixture(scope="module")
def registry():
    return load_default_registry()


def test_json_answers_of_all_functions_parse_back_to_the_same_calls(registry):
    from octopus_ros.data import generate

    seen = set()
    for spec in registry.enabled():
        for split in ("train", "unseen_phrasing"):
            if split == "unseen_phrasing" and spec.name == "no_action":
                continue
            for ex in generate(split, 8, 3, functions=[spec.name]):
                text = convert_answer(ex.answer, "json", registry)
                assert "<nexa" not in text and json.loads(text)["function"] == spec.name, text
                call = parse_answer(text, "json", registry)
                assert call.to_text() == ex.answer, (ex.answer, text, call)
                seen.add(spec.name)
    assert seen == {s.name for s in registry.enabled()} and len(seen) == 13
    decline = parse_call(f"{registry.decline_function.token_text}(){'<nexa_end>'}", registry)
    assert convert_answer(decline.to_text(), "json", registry) == '{"function":"no_action","arguments":{}}'
    # typed values keep their canonical form: float with at most two decimals, Chinese characters as is
    speed = parse_call("<nexa_11>(0.85)<nexa_end>", registry)
    assert convert_answer(speed.to_text(), "json", registry).endswith('{"value":0.85}}')
    assert convert_answer(speed.to_text(), "functional", registry) == speed.to_text()
    with pytest.raises(ValueError, match="not a call"):
        convert_answer("pick_up('red cup')", "json", registry)


def test_node_check_refuses_a_json_checkpoint_outside_plain_decoding(tmp_path):
    ckpt = tmp_path / "m"
    ckpt.mkdir()
    assert checkpoint_answer_format(ckpt) == "functional"  # no config: the loader reports that
    (ckpt / "config.json").write_text(json.dumps({"model": {"answer_format": "json"}}))
    assert checkpoint_answer_format(ckpt) == "json"
    for mode in ("constrained", "generate"):
        with pytest.raises(AnswerFormatError, match="decode_mode plain"):
            check_decode_mode("json", mode, where=str(ckpt))
    check_decode_mode("json", "plain")
    check_decode_mode("functional", "constrained")
    (ckpt / "config.json").write_text(json.dumps({"model": {"answer_format": "yaml"}}))
    with pytest.raises(AnswerFormatError, match="config.json"):
        checkpoint_answer_format(ckpt)


def _tiny_cfg(**changes):
    from octopus_ros.training.stages import TrainConfig

    cfg = TrainConfig(
        steps={"vision": 1, "text": 2, "align": 1, "calls": 3, "refine": 0},
        skip=("refine",),
        pool_calls=120,
        pool_align=40,
        batch=4,
        vocab_size=600,
        image_size=32,
        threads=1,
        message_corpus=0.0,  # answers stay those of the records (the check below compares them)
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_tiny_json_run_teaches_json_answers_and_records_the_format(tmp_path, registry):
    from octopus_ros.model import Octopus, load_checkpoint
    from octopus_ros.model.testing import tiny_config
    from octopus_ros.training.evaluate import decode_mode
    from octopus_ros.training.stages import Trainer
    from octopus_ros.training.train_all import build_pools, function_doc_corpus, train

    cfg = _tiny_cfg(answer_format="json")
    out = train(
        cfg,
        tmp_path / "json",
        evaluate_n=0,
        model_config=tiny_config(image_size=32, tower="resnet"),
        copier_steps=2,
    )
    assert not (out / COPIER_FILE).exists()  # the copier serves the functional grammar only
    ckpt = load_checkpoint(out)
    assert ckpt.model.config.answer_format == "json"
    assert json.loads((out / "config.json").read_text())["model"]["answer_format"] == "json"
    assert checkpoint_answer_format(out) == "json"
    octopus = Octopus.load(out)
    assert decode_mode(octopus) == "plain"
    with pytest.raises(AnswerFormatError):
        check_decode_mode(checkpoint_answer_format(out), "constrained")

    # what the run trains on: every call record's answer tokens are JSON text of its call
    pools = build_pools(cfg)
    trainer = Trainer(ckpt.model, ckpt.tokenizer, cfg, pools)
    special = set(ckpt.model.config.nexa_token_ids) | {ckpt.model.config.nexa_end_id}
    functions = set()
    for i, rec in enumerate(pools["calls"]):
        ex = trainer._example("calls", i)
        answer = [t for t, label in zip(ex.input_ids, ex.labels, strict=True) if label != -100]
        assert answer[-1] == ckpt.model.config.eos_token_id and not special & set(answer)
        text = ckpt.tokenizer.decode(answer[:-1], skip_special_tokens=False)
        assert text.startswith('{"function":"'), text
        assert parse_answer(text, "json", registry).to_text() == rec["answer"]
        functions.add(rec["function"])
    assert len(functions) >= 10  # the pool covers (nearly) every function
    # a message body from the corpus is written as JSON too, even with a character the call grammar
    # refuses in a string (the corpus has "<knghtbrd> OMG, ...": convert_answer cannot parse that back)
    trainer.cfg.message_corpus = 1.0
    trainer.pools["message_corpus"] = {"en": ["<bob> see you at noon."], "zh": ["<bob> 中午见。"]}
    messages = [i for i, r in enumerate(pools["calls"]) if r["function"] == "send_message"]
    copied = 0
    for i in messages:
        ex = trainer._example("calls", i)
        answer = [t for t, label in zip(ex.input_ids, ex.labels, strict=True) if label != -100]
        data = json.loads(ckpt.tokenizer.decode(answer[:-1], skip_special_tokens=False))
        assert data["function"] == "send_message"
        copied += data["arguments"]["text"].startswith("<bob> ")
    assert messages and copied >= 1
    assert not any("<nexa_" in line for line in function_doc_corpus(registry, "json"))
    # json cannot run stage 5 (it decides with the functional-token grammar)
    with pytest.raises(ValueError, match="skip it"):
        train(_refine_cfg(), tmp_path / "x", evaluate_n=0)


def test_train_all_trains_the_span_copier_last_on_the_final_weights(tmp_path):
    from octopus_ros.lean.copier import copier_weights_sha
    from octopus_ros.model import Octopus
    from octopus_ros.model.testing import tiny_config
    from octopus_ros.training.train_all import train

    out = train(
        _tiny_cfg(),
        tmp_path / "f",
        evaluate_n=0,
        model_config=tiny_config(image_size=32, tower="resnet"),
        grounding_steps=2,
        copier_steps=3,
    )
    assert (out / "grounding.safetensors").is_file() and (out / COPIER_FILE).is_file()
    meta = json.loads(__import__("safetensors").safe_open(str(out / COPIER_FILE), "np").metadata()["copier"])
    assert meta["steps"] == 3 and meta["weights_sha256"] == copier_weights_sha(out) is not None
    assert Octopus.load(out).copier is not None  # not stale: loaded by the runtime
    assert json.loads((out / "metrics.json").read_text())["span_copier"]["steps"] == 3


def _refine_cfg():
    cfg = _tiny_cfg(answer_format="json", skip=())
    cfg.steps["refine"] = 2
    return cfg


def test_perceiver_option_builds_a_perceiver_with_the_mlp_token_count():
    from octopus_ros.model import attach_tokenizer, build_model, get_model_config, resolve_config
    from octopus_ros.model.connector import MLPProjector, PerceiverResampler
    from octopus_ros.model.testing import tiny_config, tiny_tokenizer
    from octopus_ros.training.train_all import with_connector

    bundled = with_connector(get_model_config("octopus-tiny-rnc"), "perceiver", None)
    assert bundled.connector.type == "perceiver" and resolve_config(bundled).num_image_tokens == 6
    tok = tiny_tokenizer(num_functions=13)
    mlp_cfg = tiny_config(image_size=32, tower="resnet-colour")
    for connector, kind in (("perceiver", PerceiverResampler), ("mlp", MLPProjector)):
        cfg = attach_tokenizer(
            with_connector(tiny_config(image_size=32, tower="resnet-colour"), connector, None), tok, 13
        )
        model = build_model(cfg)
        assert isinstance(model.connector, kind)
        assert model.config.num_image_tokens == resolve_config(mlp_cfg).num_image_tokens
    assert with_connector(tiny_config(), "perceiver", 3).connector.num_latents == 3
    with pytest.raises(ValueError, match="perceiver"):
        with_connector(tiny_config(), "mlp", 3)


def test_cli_passes_the_options_through(monkeypatch, tmp_path):
    from octopus_ros.training import train_all

    got = {}
    monkeypatch.setattr(train_all, "train", lambda cfg, out, **kw: got.update(cfg=cfg, out=out, **kw))
    train_all.main(
        ["--out", str(tmp_path), "--answer-format", "json", "--connector", "perceiver", "--skip", "refine"]
    )
    assert got["cfg"].answer_format == "json" and got["cfg"].connector == "perceiver"
    train_all.main(["--out", str(tmp_path)])
    assert got["cfg"].answer_format == "functional" and got["cfg"].connector is None
    assert got["copier_steps"] == COPIER_STEPS
    from octopus_ros.training.evaluate import EVAL_N

    assert got["evaluate_n"] == EVAL_N  # a fresh make train evaluates as make evaluate does
    train_all.main(["--out", str(tmp_path), "--copier-steps", "0"])
    assert got["copier_steps"] == 0
    for argv in (["--answer-format", "json"], ["--perceiver-latents", "4"]):
        with pytest.raises(SystemExit):
            train_all.main(["--out", str(tmp_path), *argv])
