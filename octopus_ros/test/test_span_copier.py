"""The span copier (issue 12.2): a pointer head picks the words a copied argument takes; the
grammar then accepts only that span, and its probability joins the confidence."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from octopus_ros.functions import CallGrammar, FunctionRegistry, parse_call
from octopus_ros.lean.copier import COPIER_FILE, SpanCopier, UtteranceTokens, encode_with_offsets
from octopus_ros.lean.errors import CheckpointError
from octopus_ros.paths import config_path
from octopus_ros.training.span_copier import CopierNet, build_items, train


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained tiny checkpoint with a copier trained for a few steps on its embeddings."""
    from octopus_ros.model import save_checkpoint
    from octopus_ros.model.testing import tiny_model, tiny_tokenizer

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    path = save_checkpoint(
        tmp_path_factory.mktemp("ckpt"), tiny_model(tok), tok, functions=config_path("functions.yaml")
    )
    meta = train(path, steps=80, n_train=200, n_val=60, seed=0, progress=False)
    return path, meta


def test_numpy_copier_computes_what_the_torch_module_does():
    torch.manual_seed(1)
    net = CopierNet(24, proj=16, hidden=8)
    for p in net.parameters():  # larger than the init, so every gate and the GELU are exercised
        torch.nn.init.normal_(p, std=0.5)
    copier = net.to_copier({})
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 24)).astype(np.float32) for n in (1, 5, 13)]
    for x in seqs:
        want = net(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(copier.logits(x), want, atol=2e-5)
    # a padded batch gives each sequence what it gives alone (training batches, inference one)
    width = max(len(x) for x in seqs)
    batch = torch.zeros(len(seqs), width, 24)
    for b, x in enumerate(seqs):
        batch[b, : len(x)] = torch.from_numpy(x)
    out = net(batch, torch.tensor([len(x) for x in seqs])).detach().numpy()
    for b, x in enumerate(seqs):
        np.testing.assert_allclose(out[b, : len(x)], copier.logits(x), atol=2e-5)


def test_utterance_tokens_start_and_end_on_word_boundaries():
    from octopus_ros.model.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    for text in ["text Bob that the meeting is cancelled", "给鲍勃发短信说会议取消了"]:
        ids, offsets = encode_with_offsets(tok, text)
        t = UtteranceTokens.of(text, ids, offsets)
        for k in range(len(ids)):
            a, b = int(t.starts[k]), int(t.ends[k])
            if t.can_start[k]:
                assert a == 0 or not (text[a - 1].isalnum() and text[a].isalnum() and text[a].isascii())
                assert not text[a].isspace()
            if t.can_end[k]:
                assert b == len(text) or not (
                    text[b - 1].isalnum() and text[b].isalnum() and text[b].isascii()
                )
        # every span the copier can pick is one the grammar accepts
        copier = CopierNet(8).to_copier({})
        rng = np.random.default_rng(1)
        span = copier.pick(text, t, rng.normal(size=(len(ids), 8)).astype(np.float32))
        bound = CallGrammar(FunctionRegistry.from_yaml(config_path("functions.yaml"))).bind(text)
        assert span is not None and bound.is_span(span.text), span
        assert 0.0 < span.prob <= 1.0


def test_the_training_data_locates_the_value(registry):
    from octopus_ros.model.testing import tiny_tokenizer

    items = build_items("train", 40, 3, registry, tiny_tokenizer(), corpus_p=0.0, corpus=None)
    assert len(items) >= 20
    for it in items:
        a, b = int(it.tokens.starts[it.first]), int(it.tokens.ends[it.last])
        assert it.text[a:b] == it.value


def test_a_trained_copier_is_saved_with_its_figures_and_weights(tiny_ckpt):
    path, meta = tiny_ckpt
    saved = json.loads((path / "config.json").read_text())["weights"]["sha256"]
    assert meta["weights_sha256"] == saved and meta["functions"] == ["send_message"]
    assert meta["train"]["n"] > 0 and 0.0 <= meta["heldout_phrasing"]["exact_all"] <= 1.0
    copier = SpanCopier.load(path, weights_sha256=saved)
    assert copier is not None and copier.meta["steps"] == 80


@pytest.fixture(scope="module")
def bundled_ckpt(tmp_path_factory):
    """A copy of the bundled model with a copier trained for a few steps (a trained LM picks
    send_message for a message request; an untrained one picks anything)."""
    import shutil

    from octopus_ros.paths import default_model_dir

    path = tmp_path_factory.mktemp("bundled") / "model"
    shutil.copytree(default_model_dir(), path)
    train(path, steps=60, n_train=200, n_val=40, seed=0, progress=False)
    return path


def test_decide_copies_the_copiers_span_and_lowers_the_confidence(bundled_ckpt, registry):
    from octopus_ros.model.runtime import Octopus

    octopus = Octopus.load(bundled_ckpt)
    assert octopus.copier is not None
    from octopus_ros.lean.copier import absorb_gap, carrier_words, named_mentions

    utterance = "text bob that the meeting is cancelled"
    ids, offsets = encode_with_offsets(octopus.tokenizer, utterance)
    mentions = named_mentions(octopus.registry, ["send_message"], utterance)
    span = octopus.copier.pick(
        utterance, UtteranceTokens.of(utterance, ids, offsets), octopus._copier_embed(ids), mentions
    )
    # the copier's span, with the words between the recipient and it that no phrasing uses
    span = absorb_gap(
        utterance, span, mentions, carrier_words(octopus.registry, ["send_message"]), octopus.copier.max_chars
    )
    image = np.zeros((32, 32, 3), np.uint8)
    d = octopus.decide(utterance, image, allowlist=["send_message"], max_new_tokens=120)
    assert d.ok, d.error
    assert d.call.function == "send_message" and d.call.args[1].value == span.text
    assert d.copy_prob == pytest.approx(span.prob) and d.confidence <= span.prob + 1e-9
    # without the copier the model types its own span (any word-aligned one), at its own confidence
    octopus.copier = None
    d2 = octopus.decide(utterance, image, allowlist=["send_message"], max_new_tokens=120)
    assert np.isnan(d2.copy_prob) and (not d2.ok or d2.call.args[1].value in utterance)


def test_stale_and_damaged_copiers(tiny_ckpt, tmp_path, caplog):
    import shutil

    path, _ = tiny_ckpt
    other = tmp_path / "ckpt"
    shutil.copytree(path, other)
    with caplog.at_level(logging.WARNING):
        assert SpanCopier.load(other, weights_sha256="0" * 64) is None
    assert "other weights" in caplog.text and "octopus_ros.training.span_copier" in caplog.text
    (other / COPIER_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=COPIER_FILE):
        SpanCopier.load(other, weights_sha256=None)
    (other / COPIER_FILE).unlink()
    assert SpanCopier.load(other) is None  # no copier: copied arguments take any span


def test_a_bound_copy_is_the_only_value(registry):
    utterance = "tell mom I'll be home by six"
    grammar = CallGrammar(registry)
    bound = grammar.bind(utterance, copy="I'll be home by six")
    assert bound.accepts("<nexa_10>('mom', 'I\\'ll be home by six')<nexa_end>")
    assert not bound.accepts("<nexa_10>('mom', 'home')<nexa_end>")
    assert not bound.accepts("<nexa_10>('mom', 'I\\'ll be home by')<nexa_end>")
    state = bound.advance(bound.start(), "<nexa_10>('mom', ")
    assert bound.forced(state) == "'I\\'ll be home by six')<nexa_end>"
    assert bound.accepts("<nexa_0>('red cup')<nexa_end>")  # other functions are untouched
    call = parse_call("<nexa_10>('mom', 'I\\'ll be home by six')<nexa_end>", registry)
    assert call.args[1].value == "I'll be home by six"
    for bad in ("ome by", "home  by", "seven", "x" * 60):
        with pytest.raises(ValueError):
            grammar.bind(utterance + " " + "x" * 60, copy=bad)


def test_the_temperature_changes_the_probability_not_the_span():
    from octopus_ros.model.testing import tiny_tokenizer

    torch.manual_seed(2)
    net = CopierNet(8)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    text = "text Bob that the meeting is cancelled"
    ids, offsets = encode_with_offsets(tiny_tokenizer(), text)
    tokens = UtteranceTokens.of(text, ids, offsets)
    embeds = np.random.default_rng(3).normal(size=(len(ids), 8)).astype(np.float32)
    sharp, flat = net.to_copier({}), net.to_copier({"temperature": 4.0})
    a, b = sharp.pick(text, tokens, embeds), flat.pick(text, tokens, embeds)
    assert (a.start, a.end) == (b.start, b.end) and b.prob < a.prob
    with pytest.raises(ValueError, match="temperature"):
        net.to_copier({"temperature": 0.0})


def test_requests_without_carrier_punctuation_keep_the_value():
    from octopus_ros.training.span_copier import _unpunctuated

    assert _unpunctuated("text mom: landed safely, see you", "landed safely, see you") == (
        "text mom landed safely, see you"
    )
    assert _unpunctuated("告诉妈妈：我六点前到家。", "我六点前到家") == "告诉妈妈我六点前到家"


def test_a_span_the_grammar_cannot_take_falls_back_to_every_span(registry):
    """A copier's span longer than the copied argument allows (or not a word span) leaves the
    grammar unbound to it instead of failing the decision."""
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    body = "the meeting with the whole team is moved to next thursday afternoon"  # > 48 characters
    utterance = f"text bob that {body}"
    for text in (body, "eting wi"):
        copier = SimpleNamespace(pick=lambda *_a, t=text: CopiedSpan(t, 0, len(t), 0.9), max_chars=48)
        grammar, span = copy_span(
            copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
        )
        assert span is None and grammar._exact is None and grammar.is_span("the meeting")


class _Adversary:
    """Copier logits that prefer one span: start at character ``start``, end at ``end``."""

    def __init__(self, tokens: UtteranceTokens, start: int, end: int):
        self.lg = np.zeros((len(tokens.ids), 2), np.float32)
        self.lg[:, 0] = np.where(tokens.starts == start, 8.0, 0.0)
        self.lg[:, 1] = np.where(tokens.ends == end, 8.0, 0.0)
        self.max_chars, self.temperature = 48, 1.0

    def logits(self, embeds):
        return self.lg

    def pick(self, text, tokens, embeds, mentions=()):
        return SpanCopier.pick(self, text, tokens, embeds, mentions)


def _tokens(text: str) -> UtteranceTokens:
    from octopus_ros.model.testing import tiny_tokenizer

    ids, offsets = encode_with_offsets(tiny_tokenizer(), text)
    return UtteranceTokens.of(text, ids, offsets)


def test_named_mentions_are_the_named_rules_matches(registry):
    from octopus_ros.lean.copier import named_mentions

    def said(text):
        return [text[a:b] for a, b in named_mentions(registry, ["send_message"], text)]

    assert said("text Bob that my mom landed") == ["Bob", "my mom"]  # "my mom" and "mom": one mention
    assert said("text bobsleigh results") == []  # not inside a latin word (functions/mentions.py)
    assert said("发短信提醒爸爸带钥匙") == ["爸爸"]
    assert named_mentions(registry, ["decline"], "text Bob that my mom landed") == ()  # nothing copied


@pytest.mark.parametrize(
    "text, swallowing",
    [
        ("text Bob the meeting is cancelled", "Bob the meeting is cancelled"),
        ("发短信提醒爸爸带钥匙", "醒爸爸带钥匙"),
    ],
)
def test_the_span_never_takes_the_lone_mention_of_the_contact(registry, text, swallowing):
    """Logits that prefer a span swallowing the contact: without the rule that span is copied,
    with it the span keeps clear of the mention, at a lower probability."""
    from octopus_ros.lean.copier import named_mentions

    tokens = _tokens(text)
    adversary = _Adversary(tokens, text.index(swallowing), len(text))
    embeds = np.zeros((len(tokens.ids), 4), np.float32)
    bad = adversary.pick(text, tokens, embeds)
    assert bad.text == swallowing
    mentions = named_mentions(registry, ["send_message"], text)
    span = adversary.pick(text, tokens, embeds, mentions)
    assert span is not None and span.prob < bad.prob
    assert all(span.end <= a or span.start >= b for a, b in mentions), span


def test_a_span_never_cuts_a_mention_and_takes_one_only_if_another_stays_outside(registry):
    from octopus_ros.lean.copier import clear_of_mentions, named_mentions

    text = "text mom that I am at the office"
    tokens = _tokens(text)
    mentions = named_mentions(registry, ["send_message"], text)
    assert [text[a:b] for a, b in mentions] == ["mom", "the office"]
    ok = clear_of_mentions(tokens, mentions)
    assert ok[tokens.token_span(text.index("I am"), len(text))]  # names the office; "mom" is outside
    assert not ok[tokens.token_span(text.index("mom"), len(text))]  # no mention would stay outside
    assert not ok[tokens.token_span(text.index("I am"), text.index("the office") + 3)]  # cuts one
    for a, b in zip(*np.nonzero(ok), strict=True):
        s, e = int(tokens.starts[a]), int(tokens.ends[b])
        assert all(not (ma < s < mb) and not (ma < e < mb) for ma, mb in mentions)


def test_no_span_left_is_no_span(registry):
    """Where the mentions leave no span the copier picks none, and copy_span binds the grammar as
    without a copier."""
    from octopus_ros.lean.copier import copy_span

    text = "Bob"
    tokens = _tokens(text)
    adversary = _Adversary(tokens, 0, 3)
    assert adversary.pick(text, tokens, np.zeros((len(tokens.ids), 4)), ((0, 3),)) is None
    grammar, span = copy_span(
        adversary, CallGrammar(registry), text,
        lambda u: (tokens.ids, [(int(a), int(b)) for a, b in zip(tokens.starts, tokens.ends, strict=True)]),
        lambda ids: np.zeros((len(ids), 4), np.float32),
    )  # fmt: skip
    assert span is None and grammar._exact is None and grammar.is_span("Bob")


def test_the_marker_between_contact_and_message_can_be_left_out():
    from octopus_ros.training.span_copier import drop_marker

    cases = [
        ("tell bob that the wifi is down", "the wifi is down", "en", 8, "tell bob the wifi is down"),
        ("send a message to mom saying hi there", "hi there", "en", 21, "send a message to mom hi there"),
        ("ping Bob with the package arrived", "the package arrived", "en", 8, "ping Bob the package arrived"),
        ("text mom: that is it", "that is it", "en", 8, "text mom that is it"),  # the value keeps its "that"
        ("告诉妈妈：我到了", "我到了", "zh", 4, "告诉妈妈我到了"),
        ("跟老爸说一声猫饿了", "猫饿了", "zh", 3, "跟老爸猫饿了"),
        ("发消息给Bob，内容是水开了", "水开了", "zh", 7, "发消息给Bob水开了"),
        ("发短信给爸爸说我到了", "我到了", "zh", 6, "发短信给爸爸我到了"),
    ]
    for text, value, lang, after, want in cases:
        assert drop_marker(text, value, lang, after) == want
    assert drop_marker("let dad know lunch at noon", "lunch at noon", "en", 7) is None  # no marker


def test_marker_drop_in_the_training_data_is_deterministic_and_keeps_the_value(registry):
    from octopus_ros.model.testing import tiny_tokenizer

    def texts(p):
        items = build_items(
            "train", 120, 5, registry, tiny_tokenizer(), corpus_p=0.0, corpus=None, marker_drop_p=p
        )
        return items, [it.text for it in items]

    plain, plain_texts = texts(0.0)
    dropped, dropped_texts = texts(1.0)
    assert dropped_texts != plain_texts
    assert texts(1.0)[1] == dropped_texts  # deterministic in the seed
    no_option = build_items("train", 120, 5, registry, tiny_tokenizer(), corpus_p=0.0, corpus=None)
    assert [it.text for it in no_option] == plain_texts  # p = 0 draws nothing
    for lang, markers in (("en", (" that ", " saying ", ": ")), ("zh", ("：", "内容是"))):

        def marked(items, lang=lang, markers=markers):
            return sum(any(m in it.text for m in markers) for it in items if it.language == lang)

        assert marked(dropped) < marked(plain) / 3, lang
    for it in dropped:
        a, b = int(it.tokens.starts[it.first]), int(it.tokens.ends[it.last])
        assert it.text[a:b] == it.value and it.mentions
        assert all(b <= ma or a >= mb for ma, mb in it.mentions)  # the contact stays outside


def test_carrier_words_are_the_training_phrasings_words_outside_their_slots(registry):
    from octopus_ros.lean.copier import carrier_words

    words = carrier_words(registry, ["send_message", "pick_up"])  # pick_up copies nothing: ignored
    assert {"tell", "that", "saying", "to", "说", "讲", "告", "诉"} <= words
    assert "know" not in words  # only the held-out "let {contact} know {msg}" says it
    assert not words & {"mom", "bob", "妈", "cup"}  # slot values are not phrasing words
    assert carrier_words(registry, ["pick_up"]) == frozenset()


@pytest.mark.parametrize(
    "text, copied, want",
    [
        ("告诉爸爸饭做好了", "做好了", "饭做好了"),  # a message's first character, dropped
        ("给爸爸发一条，家里没牛奶了", "牛奶了", "家里没牛奶了"),
        ("告诉爸爸说饭做好了", "做好了", "饭做好了"),  # up to the carrier word, not over it
        ("告诉爸爸说饭做好了", "饭做好了", "饭做好了"),  # nothing left in the gap
        ("给爸爸发消息：饭做好了", "饭做好了", "饭做好了"),
        ("饭做好了，告诉爸爸", "做好了", "做好了"),  # the recipient after the message: no gap
        # English: the words after a carrier join ("to", "that" introduce the message) ...
        ("tell Bob to bring the charger", "the charger", "bring the charger"),
        ("text bob that the meeting is cancelled", "meeting is cancelled", "the meeting is cancelled"),
        ("tell Bob to bring the charger", "bring the charger", "bring the charger"),
        # ... not when nothing introduces them ("know" is in no phrasing) ...
        ("let bob know I fixed the sink", "I fixed the sink", "I fixed the sink"),
        ("let bob know I fixed the sink", "fixed the sink", "fixed the sink"),
        # ... nor over a pause mark, where a message starts
        ("send mum a quick one: are we still on", "are we still on", "are we still on"),
        ("tell Bob that, sadly, the game is off", "the game is off", "the game is off"),
        # the recipient said again by a pronoun introduces the message, as a carrier does
        (
            "message Bob for me, tell him the game starts at eight",
            "the game starts at eight",
            "the game starts at eight",
        ),
        ("message Bob for me, tell him dinner is ready", "is ready", "dinner is ready"),
        # ... but not a possessive, nor a pronoun after a word that addresses nobody
        ("告诉妈妈她的快递到了", "快递到了", "她的快递到了"),
        ("告诉爸爸他的车挡路了", "车挡路了", "他的车挡路了"),
        ("tell mom that her keys are on the table", "keys are on the table", "her keys are on the table"),
        # Chinese: a pause after the words that ask for a message is where it starts, carriers in
        # the words after it (个, 给, 他) or not (stop 51) ...
        (
            "那个，给爸爸发个短信，这个月生活费收到了，谢谢爸",
            "月生活费收到了，谢谢爸",
            "这个月生活费收到了，谢谢爸",
        ),
        ("给爸爸发条消息，生日快乐，老爷子", "爷子", "生日快乐，老爷子"),  # the message's own pause
        ("给鲍勃发条消息，客房给他收拾好了", "收拾好了", "客房给他收拾好了"),
        ("帮我给老爸发条信息，我到公司了", "到公司了", "我到公司了"),
        # ... unless they introduce it themselves: a saying verb, the recipient again after a verb
        ("给爸爸发个短信，告诉他比赛七点开始", "比赛七点开始", "比赛七点开始"),
        ("给爸爸发个短信，就说比赛七点开始", "比赛七点开始", "比赛七点开始"),
        ("给爸爸发个短信，让他买点牛奶", "买点牛奶", "买点牛奶"),
    ],
)
def test_a_gap_of_words_no_phrasing_uses_joins_the_message(registry, text, copied, want):
    from octopus_ros.lean.copier import CopiedSpan, absorb_gap, carrier_words, named_mentions

    start = text.rindex(copied)
    span = CopiedSpan(copied, start, start + len(copied), 0.8)
    mentions = named_mentions(registry, ["send_message"], text)
    got = absorb_gap(text, span, mentions, carrier_words(registry, ["send_message"]), 48)
    assert got.text == want and got.prob == 0.8 and text[got.start : got.end] == want
    assert got.absorbed == want[: len(want) - len(copied)].strip()
    # nothing is added past the copied argument's length, or without carrier words to stop at
    assert absorb_gap(text, span, mentions, carrier_words(registry, ["send_message"]), len(copied)) == span
    assert absorb_gap(text, span, mentions, frozenset(), 48) == span


def test_copy_span_applies_the_gap_rule(registry, tmp_path):
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    utterance = "告诉爸爸饭做好了"
    copier = SimpleNamespace(pick=lambda *_a: CopiedSpan("做好了", 5, 8, 0.9), max_chars=48)
    grammar, span = copy_span(
        copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    assert span.text == "饭做好了" and grammar.is_span("饭做好了")
    # a grown span the grammar refuses (longer than the argument allows) gives the copier's own
    path = tmp_path / "functions.yaml"
    path.write_text(
        config_path("functions.yaml").read_text(encoding="utf-8").replace("max_length: 48", "max_length: 3"),
        encoding="utf-8",
    )
    small = FunctionRegistry.from_yaml(path)
    assert next(a for a in small.by_name("send_message").args if a.name == "text").max_length == 3
    grammar, span = copy_span(
        copier, CallGrammar(small), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    assert span.text == "做好了" and span.absorbed == ""


def test_lead_ins_are_the_chinese_endings_before_the_copied_slot(registry):
    from octopus_ros.lean.copier import lead_ins

    leads = lead_ins(registry, ["send_message", "pick_up"])  # pick_up copies nothing: ignored
    assert {"说一声", "一声", "一下，", "告诉他", "内容是"} <= set(leads)
    assert "一下" not in leads  # "说一下，" keeps its pause mark: "一下午" is no lead-in
    assert not [t for t in leads if len(t) < 2]  # one character ("说") could begin any message
    assert list(leads) == sorted(leads, key=lambda t: (-len(t), t))  # longest first
    assert lead_ins(registry, ["pick_up"]) == ()


@pytest.mark.parametrize(
    "text, copied, want",
    [
        ("跟办公室讲一声我会晚到半小时", "一声我会晚到半小时", "我会晚到半小时"),
        ("麻烦知会鲍勃一声，今晚的聚会改到七点半", "一声，今晚的聚会改到七点半", "今晚的聚会改到七点半"),
        ("告诉妈妈一下午都在下雨", "一下午都在下雨", "一下午都在下雨"),  # no pause mark: a word
        ("跟妈妈说一声", "一声", "一声"),  # nothing would be left
        ("给爸爸发消息：饭做好了", "饭做好了", "饭做好了"),
    ],
)
def test_a_message_starts_after_its_lead_in(registry, text, copied, want):
    from octopus_ros.lean.copier import CopiedSpan, lead_ins, shed_lead_in

    start = text.rindex(copied)
    span = CopiedSpan(copied, start, start + len(copied), 0.8)
    got = shed_lead_in(text, span, lead_ins(registry, ["send_message"]))
    assert got.text == want and got.prob == 0.8 and text[got.start : got.end] == want
    assert got.shed == copied[: len(copied) - len(want)].strip()


def test_copy_span_applies_the_lead_in_rule(registry):
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    utterance = "跟办公室讲一声我会晚到半小时"
    copier = SimpleNamespace(pick=lambda *_a: CopiedSpan("一声我会晚到半小时", 5, 14, 0.9), max_chars=48)
    grammar, span = copy_span(
        copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    assert span.text == "我会晚到半小时" and span.shed == "一声"
    assert grammar.accepts("<nexa_10>('office', '我会晚到半小时')<nexa_end>")
    assert not grammar.accepts("<nexa_10>('office', '一声我会晚到半小时')<nexa_end>")


@pytest.mark.parametrize(
    "text, copied, want",
    [
        (
            "shoot Alice a note, the movie starts at nine, okay",
            "the movie starts at nine, okay",
            "the movie starts at nine",
        ),
        ("text bob um, see you soon, thanks!", "um, see you soon, thanks!", "see you soon"),
        ("跟Bob说一声，嗯，会议改到周二了，谢谢", "嗯，会议改到周二了，谢谢", "会议改到周二了"),
        ("通知一下Alice，电影九点半开始，好吧", "电影九点半开始，好吧", "电影九点半开始"),
        ("tell mom I'm okay", "I'm okay", "I'm okay"),  # not set off by a pause: part of the message
        ("tell mom thanks so much", "thanks so much", "thanks so much"),
        ("跟妈妈说谢谢你帮忙", "谢谢你帮忙", "谢谢你帮忙"),
        ("tell dad, okay", "okay", "okay"),  # nothing would be left
        ("tell bob so what, I won", "so what, I won", "so what, I won"),  # "so" without a pause after it
        # hesitation sounds go without a pause too, as a speech recogniser writes them
        (
            "text dad uh the plumber comes at noon",
            "uh the plumber comes at noon",
            "the plumber comes at noon",
        ),
        (
            "text dad um, uh the plumber comes at noon, thanks",
            "um, uh the plumber comes at noon, thanks",
            "the plumber comes at noon",
        ),
        ("tell bob I'm done uh", "I'm done uh", "I'm done"),
        ("给妈妈发消息嗯猫已经喂过了", "嗯猫已经喂过了", "猫已经喂过了"),
        ("tell mom the uh car is ready", "the uh car is ready", "the uh car is ready"),  # inside: kept
        ("tell mom the ummah is here", "the ummah is here", "the ummah is here"),  # a word, not a sound
        ("tell mom umbrella is here", "umbrella is here", "umbrella is here"),
        ("跟妈妈说额外带把伞", "额外带把伞", "额外带把伞"),  # 额外 is a word
        ("tell bob um", "um", "um"),  # nothing would be left
        ("text bob the bolt is 10 mm", "the bolt is 10 mm", "the bolt is 10 mm"),  # a unit, not a sound
        ("text mom ER was busy, home late", "ER was busy, home late", "ER was busy, home late"),
    ],
)
def test_a_message_leaves_out_the_fillers_a_pause_sets_off(text, copied, want):
    from octopus_ros.lean.copier import CopiedSpan, shed_fillers

    start = text.rindex(copied)
    span = CopiedSpan(copied, start, start + len(copied), 0.8, "", "一声")
    got = shed_fillers(text, span)
    assert got.text == want and text[got.start : got.end] == want
    assert (got.prob, got.shed) == (0.8, "一声")


@pytest.mark.parametrize(
    "copied, want",
    [
        ("happy birthday I love you, she'll know it's from me", "happy birthday I love you"),
        ("dinner at my place tonight, she\u2019s been asking all week", "dinner at my place tonight"),
        ("the game starts at eight; he always forgets", "the game starts at eight"),
        ("生日快乐我爱你，她知道是我", "生日快乐我爱你"),
        ("今晚来我家吃饭，她都问好几次了", "今晚来我家吃饭"),
        # a third-person clause that may be the message stays: only a remark's shape is cut
        ("grandma fell, she is in hospital", "grandma fell, she is in hospital"),
        ("the plumber called, he wants the gate code", "the plumber called, he wants the gate code"),
        ("dinner is at 8, he will pick you up", "dinner is at 8, he will pick you up"),
        ("ok, he is here", "ok, he is here"),
        ("今晚聚餐，她的朋友也来", "今晚聚餐，她的朋友也来"),
        # a request passed on, or words to the recipient, stay in the message
        (
            "I'm running late, he really should eat without me",
            "I'm running late, he really should eat without me",
        ),
        ("I'm late, she doesn't need to wait", "I'm late, she doesn't need to wait"),
        ("我晚点回，她今晚别等我了", "我晚点回，她今晚别等我了"),
        ("I'm home, she knows you worry", "I'm home, she knows you worry"),
        ("比赛八点开始，他们都知道", "比赛八点开始，他们都知道"),  # 他们: not the recipient alone
        ("比赛八点开始，他們都知道", "比赛八点开始，他們都知道"),  # the same in Traditional
        # the message names someone the pronoun may mean
        ("Bob is here, he always says hi", "Bob is here, he always says hi"),
        ("grandma fell, she always forgets her stick", "grandma fell, she always forgets her stick"),
        ("我妈到了，她知道地址", "我妈到了，她知道地址"),
        ("我媽到了，她知道地址", "我媽到了，她知道地址"),
        # no pause before the pronoun, no pronoun, nothing left
        ("she said he is home", "she said he is home"),
        ("the shelf, the one by the door", "the shelf, the one by the door"),
        (", she knows", ", she knows"),
    ],
)
def test_a_message_leaves_out_a_remark_about_its_recipient(copied, want):
    from octopus_ros.lean.copier import CopiedSpan, shed_remark

    text = f"text mom {copied}"
    start = text.rindex(copied)
    span = CopiedSpan(copied, start, len(text), 0.8, "", "")
    got = shed_remark(text, span)
    assert got.text == want and text[got.start : got.end] == want and got.prob == 0.8
    # a contact named inside the message: the pronoun may mean them
    if want != copied:
        assert shed_remark(text, span, [(start, start + 2)]) == span


def test_copy_span_applies_the_remark_rule_before_the_gap_rule(registry):
    """The remark goes first, so that the gap rule's length limit is read on the message alone."""
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    utterance = "ping Alice and say dinner at my place tonight, she's been asking me about it all week"
    copied = "at my place tonight, she's been asking me about it all week"
    start = utterance.index(copied)
    copier = SimpleNamespace(pick=lambda *_a: CopiedSpan(copied, start, len(utterance), 0.9), max_chars=48)
    assert len("dinner " + copied) > 48
    grammar, span = copy_span(
        copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    assert span.text == "dinner at my place tonight"
    assert grammar.accepts("<nexa_10>('alice', 'dinner at my place tonight')<nexa_end>")


def test_copy_span_applies_the_filler_rule(registry):
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    utterance = "跟Bob说一声，嗯，会议改到周二了，谢谢"
    copied = "嗯，会议改到周二了，谢谢"
    start = utterance.index(copied)
    copier = SimpleNamespace(pick=lambda *_a: CopiedSpan(copied, start, len(utterance), 0.9), max_chars=48)
    grammar, span = copy_span(
        copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    assert span.text == "会议改到周二了"
    assert grammar.accepts("<nexa_10>('bob', '会议改到周二了')<nexa_end>")
    assert not grammar.accepts("<nexa_10>('bob', '嗯，会议改到周二了，谢谢')<nexa_end>")


@pytest.mark.parametrize(
    "utterance, copied, offered",
    [
        ("我爸坐下的时候把椅子抽走", "坐下的时候把椅子抽走", False),  # a contact and the rest: no ask
        ("the office light should be on", "light should be on", False),
        ("翻个跟头", "翻个跟头", False),  # the copy is the whole request
        ("跟我爸说坐下的时候小心", "坐下的时候小心", True),  # 跟 ... 说 asks for a message
        ("tell dad dinner is ready", "dinner is ready", True),
    ],
)
def test_copy_span_offers_no_copying_function_that_nothing_asks_for(registry, utterance, copied, offered):
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    start = utterance.index(copied)
    copier = SimpleNamespace(
        pick=lambda *_a: CopiedSpan(copied, start, start + len(copied), 0.9), max_chars=48
    )
    grammar, span = copy_span(
        copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    send = registry.by_name("send_message").token
    assert (send in grammar.allowed_function_tokens()) is offered
    assert grammar.accepts(f"<nexa_{send}>('dad', '{copied}')<nexa_end>") is offered
    decline = next(s for s in registry.functions if s.decline)
    assert decline.token in grammar.allowed_function_tokens()  # declining stays possible
    assert grammar.accepts(f"<nexa_{decline.token}>()<nexa_end>")


def test_without_copying_needs_a_bound_grammar(registry):
    with pytest.raises(ValueError, match="bound grammar"):
        CallGrammar(registry).without_copying()
    bound = CallGrammar(registry).bind("text mom hi").without_copying()
    assert registry.by_name("send_message").token not in bound.allowed_function_tokens()
    # the shared tables of the unbound grammar are untouched
    assert registry.by_name("send_message").token in CallGrammar(registry).allowed_function_tokens()


@pytest.mark.parametrize(
    "text, copied, want",
    [
        ("跟老妈打个招呼，今晚我住同学家", "招呼，今晚我住同学家", "今晚我住同学家"),
        ("给妈妈报个平安，我们已经到酒店了！", "平安，我们已经到酒店了", "我们已经到酒店了"),
        ("向办公室传达一下，下周三全员培训", "传达一下，下周三全员培训", "下周三全员培训"),
        (
            "跟妈妈道个谢，就写饼干很好吃。",
            "谢，就写饼干很好吃",
            "饼干很好吃",
        ),  # and the 就写 (shed_saying_lead)
        ("给爸爸发条信息，说：我到了", "信息，说：我到了", "我到了"),
        ("跟妈妈打个招呼，写作业了吗", "招呼，写作业了吗", "写作业了吗"),  # a bare 写: the message's verb
        ("跟妈妈说好的，我马上到", "好的，我马上到", "好的，我马上到"),  # a verb of saying: the message
        ("告诉妈妈好的，我马上到", "好的，我马上到", "好的，我马上到"),  # no preposition: the verb came first
        ("给妈妈发条消息，今晚不回来吃饭", "今晚不回来吃饭", "今晚不回来吃饭"),  # starts after the mark
        (
            "跟妈妈说我明天要早起去机场，别等我",
            "明天要早起去机场，别等我",
            "明天要早起去机场，别等我",
        ),  # too far
        ("发消息给妈妈我到了，别担心", "我到了，别担心", "我到了，别担心"),  # no verb phrase: the message
        ("给Bob发消息明天见，不见不散", "明天见，不见不散", "明天见，不见不散"),
    ],
)
def test_a_message_starts_after_the_request_clause_of_a_recipient_said_after_a_preposition(
    registry, text, copied, want
):
    from octopus_ros.lean.copier import CopiedSpan, named_mentions, shed_request_clause, shed_saying_lead

    start = text.index(copied)
    span = CopiedSpan(copied, start, start + len(copied), 0.8)
    # in the order copy_span reads them: the request's clause, then what opens the message
    got = shed_saying_lead(
        text, shed_request_clause(text, span, named_mentions(registry, ["send_message"], text))
    )
    assert got.text == want and text[got.start : got.end] == want and got.prob == 0.8
    assert got.shed == copied[: len(copied) - len(want)].strip()


def test_copy_span_applies_the_request_clause_rule(registry):
    from types import SimpleNamespace

    from octopus_ros.lean.copier import CopiedSpan, copy_span

    utterance = "跟老妈打个招呼，今晚我住同学家"
    copier = SimpleNamespace(pick=lambda *_a: CopiedSpan("招呼，今晚我住同学家", 5, 15, 0.9), max_chars=48)
    grammar, span = copy_span(
        copier, CallGrammar(registry), utterance, lambda u: ([1], [(0, len(u))]), lambda ids: None
    )
    assert span.text == "今晚我住同学家"
    assert grammar.accepts("<nexa_10>('mom', '今晚我住同学家')<nexa_end>")
    assert not grammar.accepts("<nexa_10>('mom', '招呼，今晚我住同学家')<nexa_end>")


@pytest.mark.parametrize(
    "text, copied, want",
    [
        (
            "发条消息给Alice，就说：记得带桌游过来",
            "：记得带桌游过来",
            "记得带桌游过来",
        ),  # a pause mark opens nothing
        ("给爸爸发消息，就写车库门没关", "写车库门没关", "车库门没关"),  # the 写 of 就写
        ("给爸爸发个消息，就说我到了", "说我到了", "我到了"),
        (
            "Shoot Alice a text, tell her: bring the board games",
            "tell her: bring the board games",
            "bring the board games",
        ),
        ("text bob tell him that the game is at 8", "tell him that the game is at 8", "the game is at 8"),
        ("tell mom that her keys are on the table", "her keys are on the table", "her keys are on the table"),
        ("跟妈妈说写作业了吗", "写作业了吗", "写作业了吗"),  # a bare 写: the message's own verb
        ("跟妈妈说就写完了", "就写完了", "就写完了"),  # 完了 is no message
        ("tell bob tell him", "tell him", "tell him"),  # nothing would be left
        (
            "shoot alice a text, let her know I am running late",
            "let her know I am running late",
            "let her know I am running late",
        ),  # no colon nor "that": the message's own words
        (
            "text mom remind him to take his pills",
            "remind him to take his pills",
            "remind him to take his pills",
        ),
        (
            "Text dad to remind him that he needs to pick up Lily at four",
            "remind him that he needs to pick up Lily at four",
            "he needs to pick up Lily at four",
        ),
        ("跟妈妈说只写了一半", "只写了一半", "只写了一半"),  # 写了: the message's verb
        ("跟妈妈说就写完作业了", "就写完作业了", "就写完作业了"),
        (
            "Send a text to my dad, the words are: the roof guy called back.",
            "the words are: the roof guy called back",
            "the roof guy called back",
        ),
        ("message bob, it should say: pizza at eight", "it should say: pizza at eight", "pizza at eight"),
        ("给妈妈发短信，内容是：我晚点回家", "内容是：我晚点回家", "我晚点回家"),
        ("tell mom the text is ready to print", "the text is ready to print", "the text is ready to print"),
        ("嗯……给办公室留个言，说我周一再看邮件", "说我周一再看邮件", "我周一再看邮件"),  # 说 after the pause
        ("给妈妈发个消息，说好了明天见", "说好了明天见", "说好了明天见"),  # 说好了: the message's words
        ("跟爸爸说说话小声点", "说话小声点", "说话小声点"),  # no pause before it
    ],
)
def test_a_message_leaves_out_what_only_introduces_it(text, copied, want):
    from octopus_ros.lean.copier import CopiedSpan, shed_saying_lead

    start = text.index(copied)
    got = shed_saying_lead(text, CopiedSpan(copied, start, start + len(copied), 0.8))
    assert got.text == want and text[got.start : got.end] == want and got.prob == 0.8
    assert got.shed == copied[: len(copied) - len(want)].strip()


@pytest.mark.parametrize(
    ("text", "copied", "want"),
    [
        # the message first, the recipient after it: the words from the clause's start join
        ("路上堵车要晚点到，把这句发给爱丽丝", "堵车要晚点到", "路上堵车要晚点到"),
        ("生日快乐少喝点酒，这句发给老爸", "喝点酒", "生日快乐少喝点酒"),
        ("机器人，晚饭好了，把这句发给妈妈", "好了", "晚饭好了"),  # from the pause mark on
        # the recipient first: absorb_gap's case, not this one
        ("告诉爸爸饭做好了", "做好了", "做好了"),
        # English joins only after a carrier word (absorb_gap's rule)
        ("the roof guy called, tell dad", "guy called", "guy called"),
    ],
)
def test_a_message_said_before_its_recipient_starts_at_its_clause(registry, text, copied, want):
    from octopus_ros.lean.copier import CopiedSpan, absorb_opening, carrier_words, named_mentions

    start = text.index(copied)
    span = CopiedSpan(copied, start, start + len(copied), 0.8)
    mentions = named_mentions(registry, ["send_message"], text)
    got = absorb_opening(text, span, mentions, carrier_words(registry, ["send_message"]), 48)
    assert got.text == want and text[got.start : got.end] == want


@pytest.mark.parametrize(
    ("text", "copied", "want"),
    [
        ("Can you let my dad know that I picked up the prescription?", "I picked up the prescription?",
         "I picked up the prescription"),
        ("Could you message Alice and say thanks for the flowers?", "thanks for the flowers?", "thanks for the flowers"),
        # the message's own question keeps its mark
        ("Check with Bob, did you feed the cat?", "did you feed the cat?", "did you feed the cat?"),
        ("could you ask mom: are you coming home?", "are you coming home?", "are you coming home?"),
        (
            "Could you drop Bob a line: want to play tennis on Saturday?",
            "want to play tennis on Saturday?",
            "want to play tennis on Saturday?",
        ),  # said after a colon: the message's own mark
        ("tell dad the game is on?", "the game is on?", "the game is on?"),  # no polite question
    ],
)  # fmt: skip
def test_the_question_mark_of_a_polite_request_is_not_the_message(text, copied, want):
    from octopus_ros.lean.copier import CopiedSpan, shed_request_question_mark

    start = text.index(copied)
    got = shed_request_question_mark(text, CopiedSpan(copied, start, start + len(copied), 0.8))
    assert got.text == want and text[got.start : got.end] == want
