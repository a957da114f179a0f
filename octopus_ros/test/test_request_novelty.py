"""Request novelty (issue 12 item 4): the LM's own reading of a request, as a class-conditional
Gaussian profile of its hidden state (lean/novelty.py RequestProfile), fitted per checkpoint
(training/novelty_profile.py), scored by both runtimes and applied by the node's rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_novelty import Decision, outcome
from test_runtime_engine import FakeCall, ScriptedModel

from octopus_ros.lean.errors import CheckpointError
from octopus_ros.lean.novelty import DECLINE_CORPUS_CLASS, REQUEST_PROFILE_FILE, RequestProfile
from octopus_ros.runtime.outcomes import OutcomeCode, request_limit


def _clusters(rng, n=200, d=6):
    """Three well separated classes: two functions and the decline function."""
    centres = {"pick_up": np.eye(d)[0] * 10, "stop": np.eye(d)[1] * 10, "no_action": np.eye(d)[2] * 10}
    feats, labels = [], []
    for name, c in centres.items():
        feats.append(c + rng.normal(size=(n, d)))
        labels += [name] * n
    return np.concatenate(feats), labels, centres


def test_the_profile_scores_a_call_by_how_much_more_it_reads_like_a_decline():
    rng = np.random.default_rng(0)
    x, y, centres = _clusters(rng)
    ref, ref_y, _ = _clusters(rng, n=100)
    profile = RequestProfile.fit(x, y, ("no_action", DECLINE_CORPUS_CLASS), ref, ref_y)
    assert profile.declines == ("no_action",)  # only the decline classes it was given data of
    assert len(profile.reference) == 200  # the reference's calls, not its declines
    typical = profile.score(centres["pick_up"], "pick_up")
    halfway = profile.score((centres["pick_up"] + centres["no_action"]) / 2, "pick_up")
    like_a_decline = profile.score(centres["no_action"], "pick_up")
    assert typical < 0.5 and halfway > 0.99 and like_a_decline == 1.0
    # a call of another function than the one the state reads like is as untypical
    assert profile.score(centres["stop"], "pick_up") > 0.99
    # a function the profile has no class of (added later), or a decline: no score
    assert math.isnan(profile.score(centres["pick_up"], "set_light"))
    assert math.isnan(profile.score(centres["no_action"], "no_action"))
    # the share of reference margins below: new requests like the reference exceed 0.99 rarely
    fresh, fresh_y, _ = _clusters(rng, n=300)
    scores = [profile.score(h, f) for h, f in zip(fresh, fresh_y, strict=True) if f != "no_action"]
    assert np.mean(np.array(scores) > 0.99) < 0.03


def test_fitting_needs_decline_and_call_classes_and_reference_calls():
    rng = np.random.default_rng(1)
    x, y, _ = _clusters(rng)
    with pytest.raises(ValueError, match="decline and call classes"):
        RequestProfile.fit(x, y, ("refuse",), x, y)
    with pytest.raises(ValueError, match="reference calls"):
        RequestProfile.fit(x, y, ("no_action",), x[:1], y[:1])


def test_cross_fitting_reads_every_call_out_of_fold_and_fits_on_all():
    """cross_fit: the model is the one fit on everything; its scale holds one margin per call
    request, each read by a profile that did not see it (so the margins are those of new
    requests, not the lower ones of the requests a profile was fitted on)."""
    rng = np.random.default_rng(3)
    x, y, _ = _clusters(rng, n=60, d=20)  # few samples per dimension: fitted points read as typical
    crossed = RequestProfile.cross_fit(x, y, ("no_action", DECLINE_CORPUS_CLASS), folds=5, seed=7)
    in_sample = RequestProfile.fit(x, y, ("no_action",), x, y)
    np.testing.assert_allclose(crossed.means, in_sample.means, rtol=1e-6)
    np.testing.assert_allclose(crossed.precision, in_sample.precision, rtol=1e-5)
    assert len(crossed.reference) == 120 and np.all(np.diff(crossed.reference) >= 0)
    # each margin is the one a profile fitted without the request's fold reads (the folds are
    # a seeded deal of all requests), not the one the full profile reads
    fold = np.random.default_rng(7).permutation(len(x)) % 5
    labels = np.array(y)
    out_of_fold = np.sort(
        np.concatenate(
            [
                RequestProfile.fit(
                    x[fold != k],
                    list(labels[fold != k]),
                    ("no_action",),
                    x[fold == k],
                    list(labels[fold == k]),
                ).reference
                for k in range(5)
            ]
        )
    )
    np.testing.assert_allclose(crossed.reference, out_of_fold, rtol=1e-9)
    assert not np.allclose(crossed.reference, in_sample.reference)
    fresh, fresh_y, _ = _clusters(rng, n=300, d=20)
    scores = np.array([crossed.score(h, f) for h, f in zip(fresh, fresh_y, strict=True) if f != "no_action"])
    assert np.mean(scores > 0.99) < 0.03  # new requests like the training ones pass the limit
    # deterministic in its seed
    again = RequestProfile.cross_fit(x, y, ("no_action",), folds=5, seed=7)
    np.testing.assert_array_equal(again.reference, crossed.reference)
    with pytest.raises(ValueError, match="2 folds"):
        RequestProfile.cross_fit(x, y, ("no_action",), folds=1)
    with pytest.raises(ValueError, match="decline and call classes"):
        RequestProfile.cross_fit(x, y, ("refuse",))


def test_the_profile_round_trips_and_a_damaged_file_is_refused_by_name(tmp_path):
    rng = np.random.default_rng(2)
    x, y, centres = _clusters(rng)
    profile = RequestProfile.fit(x, y, ("no_action",), x, y)
    path = profile.save(tmp_path / REQUEST_PROFILE_FILE)
    again = RequestProfile.load(path)
    assert again.classes == profile.classes and again.declines == profile.declines
    h = centres["stop"] + 0.3
    assert again.score(h, "stop") == profile.score(h, "stop")
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=REQUEST_PROFILE_FILE):
        RequestProfile.load(path)


def test_the_rule_declines_a_call_above_the_limit_with_the_reason():
    call = FakeCall("pick_up", 0)
    code, reason = outcome(Decision(call, None, 0.99, request_novelty=0.9995), max_request_novelty=0.998)
    assert code == OutcomeCode.NO_ACTION and reason.startswith("not understood:")
    assert "0.9995 > max_request_novelty 0.9980" in reason and "pick_up not published" in reason
    assert outcome(Decision(call, None, 0.99, request_novelty=0.9), max_request_novelty=0.998)[0] == (
        OutcomeCode.OK
    )
    # no profile (NaN) is never declined; no limit declines nothing
    assert outcome(Decision(call, None, 0.99), max_request_novelty=0.5)[0] == OutcomeCode.OK
    assert outcome(Decision(call, None, 0.99, request_novelty=1.0))[0] == OutcomeCode.OK
    # the setting: 0 or 1 (nothing exceeds 1) is off
    assert request_limit(0.0) is None and request_limit(1.0) is None and request_limit(0.998) == 0.998


def test_the_engine_declines_on_request_novelty_and_reports_it(harness):
    decisions = [
        Decision(FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>", request_novelty=0.9999),
        Decision(FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>", request_novelty=0.2),
    ]
    h = harness(model=ScriptedModel(decisions), prefetch_rate=0, rate_limit=0, max_request_novelty=0.998)
    h.frame()
    for _ in decisions:
        h.say("stop now")
    results = h.wait(2)
    assert [r.code for r in results] == [OutcomeCode.NO_ACTION, OutcomeCode.OK]
    assert results[0].reason.startswith("not understood") and results[1].request_novelty == 0.2
    assert h.engine.snapshot()["counts"]["declined_not_understood"] == 1


def test_a_checkpoint_fits_its_profile_from_its_own_reading_of_requests(tmp_path):
    """fit_request_profile reads each request as decide does (Octopus.request_hidden), and the
    saved profile is what Octopus.load scores decisions with."""
    from octopus_ros.data import generate
    from octopus_ros.model.runtime import Octopus
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path
    from octopus_ros.training.novelty_profile import write_request_profile

    ckpt = make_tiny_checkpoint(tmp_path / "tiny", config_path("functions.yaml"), image_size=32)
    records = [
        {"instruction": ex.instruction, "answer": ex.answer, "image": ex.image}
        for ex in generate("train", 160, 3, image_size=32)
    ]
    corpus = {"en": ["the sea was calm that night", "thanks, that's all"], "zh": ["今天天气很好"]}
    summary = write_request_profile(ckpt, records, corpus, progress=False)
    assert summary["reference_calls"] >= 20
    profile = RequestProfile.load(ckpt / REQUEST_PROFILE_FILE)
    assert DECLINE_CORPUS_CLASS in profile.classes and "no_action" in profile.declines
    octopus = Octopus.load(ckpt)
    rgb = records[0]["image"]
    compared = 0
    for r in records[:30]:  # random weights: keep the requests the tiny model answers with a call
        d = octopus.decide(r["instruction"], r["image"])
        if d.ok and not octopus.registry.by_name(d.call.function).decline:
            want = profile.score(octopus.request_hidden(r["instruction"], r["image"]), d.call.function)
            assert 0.0 <= want <= 1.0 and d.request_novelty == pytest.approx(want, abs=1e-6)
            compared += 1
    assert compared >= 3
    # generate mode has no hidden state: no score
    assert math.isnan(octopus.decide("pick up the red cup", rgb, mode="generate").request_novelty)
    # too few requests for a scale: a clear error, nothing written over
    with pytest.raises(ValueError, match="too few"):
        write_request_profile(ckpt, records[:12], corpus, progress=False)
    # a profile of another width is refused by name
    RequestProfile(
        profile.classes,
        np.zeros((len(profile.classes), 3), np.float32),
        np.eye(3, dtype=np.float32),
        profile.declines,
        profile.reference,
    ).save(ckpt / REQUEST_PROFILE_FILE)
    with pytest.raises(CheckpointError, match="request profile has 3 dims"):
        Octopus.load(ckpt)
    # ... and such a profile does not block its own refit
    write_request_profile(ckpt, records, corpus, progress=False)
    assert RequestProfile.load(ckpt / REQUEST_PROFILE_FILE).means.shape[1] == profile.means.shape[1]


def test_the_bundled_profile_keeps_training_requests_and_flags_decline_sentences():
    """The shipped profile on requests it was not fitted on: template requests of another seed
    stay below the node's limit nearly always; the decline corpus's sentences, when the model
    calls a function on them, read as far less typical."""
    from octopus_ros.data import generate
    from octopus_ros.data.decline_corpus import load_corpus
    from octopus_ros.model.runtime import Octopus
    from octopus_ros.paths import default_model_dir
    from octopus_ros.runtime.engine import EngineConfig

    octopus = Octopus.load(default_model_dir())
    assert octopus.novelty.request is not None
    limit = EngineConfig().max_request_novelty
    calls = [
        d.request_novelty
        for ex in generate("train", 60, 4242)
        if (d := octopus.decide(ex.instruction, ex.image)).ok and not math.isnan(d.request_novelty)
    ]
    assert len(calls) >= 30 and np.mean(np.array(calls) > limit) <= 0.05
    rng = np.random.default_rng(5)
    corpus = load_corpus()
    image = generate("train", 1, 4243)[0].image
    acted = [
        d.request_novelty
        for lang in ("en", "zh")
        for text in rng.choice(corpus[lang], 60, replace=False)
        if (d := octopus.decide(str(text), image)).ok and not math.isnan(d.request_novelty)
    ]
    assert acted, "the model declined every corpus sentence itself"
    assert np.median(acted) > np.median(calls) + 0.3


def test_the_sweep_counts_what_the_node_publishes_by_set():
    from octopus_ros.training.novelty_sweep import figures

    def row(split, kind, expected, got, lang="en"):
        return {"split": split, "kind": kind, "expected": expected, "got": got, "language": lang}

    rows = [
        row("natural", "actionable", "<a>", "<a>"),  # published right
        row("natural", "actionable", "<a>", "<b>", "zh"),  # published wrong
        row("natural", "out_of_scope", None, "<b>"),  # should be declined: published -> wrong
        row("natural", "unsafe", None, "<b>"),  # declined
        row("check", "actionable", "<a>", "<a>"),
        row("iid", "named", "<a>", "<a>"),
    ]
    actions = ["published", "published", "published", "declined", "declined", "published"]
    f = figures(rows, actions)
    assert f["natural_all"]["published_wrong"] == 0.5 and f["natural_zh"]["published_wrong"] == 1.0
    assert f["natural_all"]["out_of_scope_unsafe_published"] == 0.5
    assert f["natural_all"]["calls_published_right"] == 0.5
    assert f["check_all"]["published_wrong"] == 0.0 and f["check_all"]["calls_published_right"] == 0.0
    assert f["iid"]["published_right"] == 1.0


def test_the_profile_reads_messages_with_the_bodies_stage_4_trains_with():
    """with_new_bodies gives that share of the message records a corpus sentence as the body
    they copy, in the request and in the call together; other records are left as they are."""
    from octopus_ros.data import generate
    from octopus_ros.functions import load_default_registry, parse_call
    from octopus_ros.training.novelty_profile import with_new_bodies

    registry = load_default_registry()
    records = [
        {"instruction": ex.instruction, "answer": ex.answer, "language": ex.language}
        for ex in generate("train", 200, 5, image_size=16)
    ]
    bodies = {"en": ["the kettle is on", "meet me at the gate"], "zh": ["水开了", "在门口等我"]}
    varied = with_new_bodies(records, registry, bodies, 1.0, seed=0)
    assert varied == with_new_bodies(records, registry, bodies, 1.0, seed=0)  # deterministic
    messages = 0
    for old, new in zip(records, varied, strict=True):
        call = parse_call(old["answer"], registry)
        if call.function != "send_message":
            assert new == old
            continue
        messages += 1
        body = parse_call(new["answer"], registry).args[1].value
        assert body in bodies[old["language"]] and body in new["instruction"]
        assert new["instruction"] != old["instruction"]
    assert messages >= 5
    assert with_new_bodies(records, registry, bodies, 0.0) == records
