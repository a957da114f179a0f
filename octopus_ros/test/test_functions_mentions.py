"""`named: true` (the registry): a contact the request does not name is never guessed."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest

from octopus_ros.functions import ArgSpec, FunctionRegistry, RegistryError, parse_call, validate_call
from octopus_ros.functions.mentions import says, uncarried, unnamed_args
from octopus_ros.paths import config_path
from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.mark.parametrize(
    ("utterance", "forms", "said"),
    [
        ("text Bob that the meeting is cancelled", ("Bob",), True),
        ("跟Bob说wifi密码改了", ("Bob",), True),  # no latin letter next to it: a word of its own
        ("go bobsleighing", ("bob",), False),
        ("tell my  Mom hi", ("my mom",), True),  # case and runs of spaces do not matter
        ("给老妈发消息", ("妈妈", "老妈"), True),
        ("send the office a note", ("the office", "office"), True),
        ("text Carol that dinner is at seven", ("Bob", "bob"), False),
        ("message my boss that I'm sick", ("Bob", "bob"), False),
        ("ｔｅｘｔ ＢＯＢ ｔｈａｔ ｈｉ", ("bob",), True),  # full-width letters, as the model reads them
    ],
)
def test_says_finds_whole_forms(utterance, forms, said):
    assert says(utterance, forms) is said


def test_named_is_for_enums_and_the_contact_declares_it(registry):
    with pytest.raises(RegistryError, match="named is only valid for enum"):
        ArgSpec(name="text", type="string", named=True)
    with pytest.raises(RegistryError, match="named must be true or false"):
        ArgSpec(name="who", type="enum", values=("a",), named="yes")
    contact = next(a for a in registry.by_name("send_message").args if a.name == "contact")
    assert contact.named and contact.to_dict()["named"] is True
    assert contact.spoken_forms("mom") == ("mom", "mum", "my mom", "妈妈", "老妈", "我妈")
    assert "charging dock" in next(
        a for a in registry.by_name("navigate_to").args if a.name == "place"
    ).spoken_forms("charging_dock")


def _outcome(registry, utterance, text):
    call = parse_call(text, registry)
    decision = SimpleNamespace(call=call, error=None, confidence=0.99)
    return decision_outcome(
        decision,
        registry,
        functools.partial(validate_call, registry=registry),
        allowlist=None,
        threshold=0.5,
        utterance=utterance,
    )


@pytest.mark.parametrize(
    ("utterance", "body", "code"),
    [
        ("text Bob that dinner is at seven", "dinner is at seven", OutcomeCode.OK),
        ("给鲍勃发消息：晚饭七点", "晚饭七点", OutcomeCode.OK),
        ("text Carol that dinner is at seven", "dinner is at seven", OutcomeCode.NO_ACTION),
        ("给李娜发：晚饭七点", "晚饭七点", OutcomeCode.NO_ACTION),
    ],
)
def test_a_contact_the_request_does_not_name_is_declined(registry, utterance, body, code):
    got, reason = _outcome(registry, utterance, f"<nexa_10>('bob', '{body}')<nexa_end>")
    assert got == code, reason
    if code == OutcomeCode.NO_ACTION:
        assert "does not name the contact" in reason and "'bob'" in reason and "mom, dad" in reason
        assert unnamed_args(registry.by_name("send_message"), parse_call(
            "<nexa_10>('bob', 'x')<nexa_end>", registry), utterance) == [("contact", "bob")]  # fmt: skip


def test_other_functions_and_unscreened_decisions_are_untouched(registry):
    # navigate_to's place is not `named`: "go charge yourself" may mean the charging dock
    assert (
        _outcome(registry, "go charge yourself", "<nexa_2>('charging_dock')<nexa_end>")[0] == OutcomeCode.OK
    )
    call = parse_call("<nexa_10>('bob', 'hi')<nexa_end>", registry)
    decision = SimpleNamespace(call=call, error=None, confidence=0.99)
    validate = functools.partial(validate_call, registry=registry)
    code, _ = decision_outcome(decision, registry, validate, allowlist=None, threshold=0.5, utterance=None)
    assert code == OutcomeCode.OK  # no utterance (a caller without one): nothing to check against


@pytest.mark.parametrize(
    ("utterance", "contact", "body", "asked"),
    [
        # a contact and a copy, and nothing that asks for a message: declined
        ("我爸坐下的时候把椅子抽走", "dad", "坐下的时候把椅子抽走", False),
        ("the office light should be on", "office", "light should be on", False),
        ("办公室的灯关上吧", "office", "的灯关上吧", False),
        ("Mom: I'm late", "mom", "I'm late", False),
        # the copy swallowed the words that ask ("说一声"): the body is wrong, declined
        ("Bob那边说一声，明天别迟到", "bob", "那边说一声，明天别迟到", False),
        # carrier words outside the copy, before or after it: asked
        ("text mom I'm late", "mom", "I'm late", True),
        ("跟妈妈说我晚点回家", "mom", "我晚点回家", True),
        ("我晚点回家，把这句发给妈妈", "mom", "我晚点回家", True),
        ("让爸爸早点回来", "dad", "早点回来", True),
        ("Bob那边说一声，明天别迟到", "bob", "明天别迟到", True),
    ],
)
def test_a_message_nothing_asks_for_is_declined(registry, utterance, contact, body, asked):
    quoted = body.replace("'", "\\'")
    text = f"<nexa_10>('{contact}', '{quoted}')<nexa_end>"
    code, reason = _outcome(registry, utterance, text)
    assert (code == OutcomeCode.OK) is asked, reason
    lone = uncarried(registry.by_name("send_message"), parse_call(text, registry), utterance)
    assert (lone is None) is asked
    if not asked:
        assert code == OutcomeCode.NO_ACTION and f"outside the copied {body!r}" in reason


def test_uncarried_leaves_functions_that_copy_nothing(registry):
    call = parse_call("<nexa_2>('kitchen')<nexa_end>", registry)
    assert uncarried(registry.by_name("navigate_to"), call, "kitchen") is None
