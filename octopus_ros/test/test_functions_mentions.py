"""`named: true` (the registry): a contact the request does not name is never guessed."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest

from octopus_ros.functions import (
    ArgSpec,
    FunctionRegistry,
    FunctionSpec,
    RegistryError,
    parse_call,
    parse_plain,
    validate_call,
)
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
    # navigate_to's place is `named` (stop 46), and "charge" says the charging dock (its said words)
    assert (
        _outcome(registry, "go charge yourself", "<nexa_2>('charging_dock')<nexa_end>")[0] == OutcomeCode.OK
    )
    assert _outcome(registry, "去充电吧", "<nexa_2>('charging_dock')<nexa_end>")[0] == OutcomeCode.OK
    # a destination nobody said is a guess: "速度调成0.8吧，我们赶时间" had been sent to the bathroom
    code, reason = _outcome(registry, "速度调成0.8吧，我们赶时间", "<nexa_2>('bathroom')<nexa_end>")
    assert code == OutcomeCode.NO_ACTION and "does not name the place" in reason
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
        # where the speaker is, and a copy: no message asked for (stop 47)
        ("我在办公室呢，你过来一下嘛", "office", "你过来一下嘛", False),
        ("I'm in the office, come find me", "office", "come find me", False),
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


@pytest.mark.parametrize(
    "text, plain, origin",
    [
        ("lift the orange can off the table", "place('orange can', 'table')", ("location", "table", "off")),
        (
            "lift the yellow ball off the ground",
            "place('yellow ball', 'floor')",
            ("location", "floor", "off"),
        ),
        ("把我手机从地上捡起来", "place('white phone', 'floor')", ("location", "floor", "从")),
        ("come back from the kitchen", "navigate_to('kitchen')", ("place", "kitchen", "from")),
        ("从厨房去卧室", "navigate_to('kitchen')", ("place", "kitchen", "从")),
        (
            "take the can out of the recycling",
            "recycle('blue can', 'recycling')",
            ("bin", "recycling", "out of"),
        ),
        (
            "move the cup from the shelf to the table",
            "place('red cup', 'shelf')",
            ("location", "shelf", "from"),
        ),
        ("把杯子从桌上拿到架子上", "place('red cup', 'table')", ("location", "table", "从")),
        ("move the cup from the shelf to the table", "place('red cup', 'table')", None),
        ("go from the kitchen to the bedroom", "navigate_to('bedroom')", None),
        ("从厨房去卧室", "navigate_to('bedroom')", None),
        ("put the cup on the table", "place('red cup', 'table')", None),
        (
            "pick the cup up off the floor and put it on the floor by the door",
            "place('red cup', 'floor')",
            None,
        ),
        (
            "Please, you take the banana for me, it is on the table.",
            "place('banana', 'table')",
            ("location", "table", "is on"),
        ),
        (
            "grab my keys, they're on the shelf",
            "place('red keys', 'shelf')",
            ("location", "shelf", "they're on"),
        ),
        ("the cup is in the box, put it on the table", "place('red cup', 'table')", None),
        (
            "grab the yellow ball from under the table",
            "place('yellow ball', 'table')",
            ("location", "table", "from"),
        ),
        ("get the shoe out from behind the box", "place('red shoe', 'box')", ("location", "box", "from")),
        ("put the ball under the table", "place('yellow ball', 'table')", None),  # where to, not from
        (
            "scoop up the green book that fell on the floor",
            "place('green book', 'floor')",
            ("location", "floor", "fell on"),
        ),
        ("the keys I left on the counter, put them in the box", "place('red keys', 'box')", None),
        ("put the cup on the table", "place('red cup', 'table')", None),
        ("make sure the cup ends up on the shelf", "place('red cup', 'shelf')", None),
        ("send mom a note from the office", "send_message('mom', 'a note')", None),
        (
            "Find out from my mom, what do we need from the store?",
            "send_message('mom', 'what do we need')",
            None,
        ),
    ],
)
def test_a_value_said_only_as_where_from_is_not_the_argument(registry, text, plain, origin):
    from octopus_ros.functions.mentions import origin_args

    call = parse_call(
        registry.by_name(plain.split("(")[0]).token_text + plain[plain.index("(") :] + "<nexa_end>", registry
    )
    got = origin_args(registry.by_name(call.function), call, text)
    assert got == ([origin] if origin else [])


def test_no_phrasing_says_a_value_as_where_from(registry):
    """The bundled phrasings never put an origin word before a slot, so no argument is exempt;
    a registry whose phrasing does ("take the {obj} from {loc}") exempts that argument."""
    from octopus_ros.functions.mentions import _origin_slots

    assert all(not _origin_slots(spec) for spec in registry.functions)
    data = registry.to_dict()
    place = next(f for f in data["functions"] if f["name"] == "place")
    place["examples"] = {"en": [{"say": "take the cup off the {location}", "args": {"object": "red cup"}}]}
    place.pop("phrasings")
    assert _origin_slots(FunctionRegistry.from_dict(data).by_name("place")) == {"location"}


def test_the_node_declines_a_value_said_as_where_from(registry):
    code, reason = _outcome(
        registry, "lift the orange can off the table", "<nexa_1>('orange can', 'table')<nexa_end>"
    )
    assert code is OutcomeCode.NO_ACTION
    assert (
        reason
        == "the request says 'table' only as where something is or comes from ('off'), not as the location"
        " (place not published)"
    )
    assert (
        _outcome(registry, "lift the orange can off the table", "<nexa_0>('orange can')<nexa_end>")[0]
        is OutcomeCode.OK
    )


@pytest.mark.parametrize(
    "text, plain, corrected",
    [
        (
            "put the yellow can on the counter no wait the shelf",
            "place('yellow can', 'counter')",
            ("location", "counter", "shelf"),
        ),
        (
            "把黄色易拉罐放台面上，不对，放架子上",
            "place('yellow can', 'counter')",
            ("location", "counter", "shelf"),
        ),
        (
            "send a message to bob no wait to alice saying lunch is on me today",
            "send_message('bob', 'lunch is on me today')",
            ("contact", "bob", "alice"),
        ),
        (
            "发消息给爸爸不对给妈妈，说晚饭不用等我",
            "send_message('dad', '晚饭不用等我')",
            ("contact", "dad", "mom"),
        ),
        (
            "go to the kitchen, actually the bedroom",
            "navigate_to('kitchen')",
            ("place", "kitchen", "bedroom"),
        ),
        ("put the yellow can on the counter no wait the shelf", "place('yellow can', 'shelf')", None),
        (
            "put the cup on the table, not the shelf",
            "place('red cup', 'table')",
            None,
        ),  # "not" rejects what follows
        ("put it on the shelf instead of the table", "place('red cup', 'shelf')", None),
        ("move the cup from the shelf to the table", "place('red cup', 'table')", None),  # no correction
        (
            "tell mom no I can't come, tell dad",
            "send_message('mom', \"no I can't come\")",
            None,
        ),  # the message's "no"
        ("扔厨余垃圾桶", "recycle('banana', 'compost')", None),  # one value, its longest mention
        ("put the cup on the shelf no not the table", "place('red cup', 'shelf')", None),  # rejects the last
        ("put it in the recycling bin, no not in the trash", "recycle('blue can', 'recycling')", None),
        ("放桌上，不对不对，不要放在架子上", "place('red cup', 'table')", None),
        ("put the cup on the table, there's no room on the shelf", "place('red cup', 'table')", None),
        ("go to the kitchen and wait there, then the office", "navigate_to('kitchen')", None),
        ("放架子上，不对，不是放桌上", "place('red cup', 'shelf')", None),
    ],
)
def test_a_value_taken_back_for_another_is_not_the_argument(registry, text, plain, corrected):
    from octopus_ros.functions import parse_plain
    from octopus_ros.functions.mentions import corrected_args

    call = parse_plain(plain, registry)
    assert corrected_args(registry.by_name(call.function), call, text) == ([corrected] if corrected else [])


def test_the_node_declines_a_value_taken_back(registry):
    text = "put the yellow can on the counter no wait the shelf"
    code, reason = _outcome(registry, text, "<nexa_1>('yellow can', 'counter')<nexa_end>")
    assert code is OutcomeCode.NO_ACTION
    assert reason == "the request took the location 'counter' back for 'shelf' (place not published)"
    assert _outcome(registry, text, "<nexa_1>('yellow can', 'shelf')<nexa_end>")[0] is OutcomeCode.OK


@pytest.mark.parametrize(
    "text, plain, verb",
    [
        ("open the front door", "navigate_to('front_door')", ("open", "front_door")),
        ("lock the front door", "navigate_to('front_door')", ("lock", "front_door")),
        ("can you vacuum the living room", "navigate_to('living_room')", ("vacuum", "living_room")),
        ("please mop the kitchen", "navigate_to('kitchen')", ("mop", "kitchen")),
        ("go to the kitchen", "navigate_to('kitchen')", None),
        ("scoot over to the living room", "navigate_to('living_room')", None),  # a preposition between
        ("travel to the kitchen, please", "navigate_to('kitchen')", None),
        ("Bedroom, now please.", "navigate_to('bedroom')", None),
        ("i think the cat's hungry can you give it some food", "feed_pet('cat')", None),
        (
            "Could you nudge Bob to return my drill",
            "send_message('bob', 'return my drill')",
            None,
        ),  # a contact
        ("开一下大门", "navigate_to('front_door')", None),  # English only
    ],
)
def test_a_verb_no_phrasing_has_on_a_value_is_not_understood(registry, text, plain, verb):
    from octopus_ros.functions import parse_plain
    from octopus_ros.functions.mentions import unknown_verb

    call = parse_plain(plain, registry)
    assert unknown_verb(registry, registry.by_name(call.function), call, text) == verb


def test_no_english_phrasing_opens_with_a_verb_no_phrasing_has(registry):
    """Every English phrasing (held-out ones too) with its enum slot filled asks for its function."""
    import string

    from octopus_ros.functions.calls import ArgValue, Call
    from octopus_ros.functions.mentions import unknown_verb

    checked = 0
    for spec in registry.functions:
        enum = [a for a in spec.args if a.type == "enum" and not a.named]
        if spec.phrasings is None or not enum:
            continue
        for lang, items in spec.phrasings.languages:
            for p in (p for p in items if lang == "en"):
                value = enum[0].values[0]
                fill = {"place": value.replace("_", " "), "loc": f"on the {value}", "bin": f"the {value} bin"}
                text = "".join(
                    lit + (fill.get(field, "red cup") if field else "")
                    for lit, field, *_ in string.Formatter().parse(p.say)
                )
                args = tuple(
                    ArgValue(a.name, a.type, value if a is enum[0] else "red cup") for a in spec.args
                )
                assert unknown_verb(registry, spec, Call(spec.name, spec.token, args), text) is None, p.say
                checked += 1
    assert checked > 50


def test_the_node_declines_a_verb_no_phrasing_has(registry):
    code, reason = _outcome(registry, "open the front door", "<nexa_2>('front_door')<nexa_end>")
    assert code is OutcomeCode.NO_ACTION
    assert reason == (
        "not understood: the request asks to 'open' the front door, and no function is asked for with"
        " 'open' (navigate_to not published)"
    )


@pytest.mark.parametrize(
    ("utterance", "plain", "elsewhere"),
    [
        (
            "take a picture of mum blowing out her birthday candles",
            "send_message('mom', 'blowing out her birthday candles')",
            ("picture", "take_photo"),
        ),
        (
            "Can you roll over to the office, I need to know if the printer is done",
            "send_message('office', 'I need to know if the printer is done')",
            ("roll", "navigate_to"),
        ),
        # a word that asks for a message, outside the copy: asked
        ("text mom that the candles are lit", "send_message('mom', 'the candles are lit')", None),
        ("um, relay to my dad that the package came", "send_message('dad', 'the package came')", None),
        ("跟妈妈说我晚点回家", "send_message('mom', '我晚点回家')", None),
        # no word asks for anything in particular: uncarried's case, not this one
        ("the office light should be on", "send_message('office', 'light should be on')", None),
        ("pick up the red cup", "pick_up('red cup')", None),  # copies nothing
    ],
)
def test_a_copy_whose_request_asks_for_another_function(registry, utterance, plain, elsewhere):
    from octopus_ros.functions.mentions import asked_elsewhere

    call = parse_plain(plain, registry)
    got = asked_elsewhere(registry, registry.by_name(call.function), call, utterance)
    assert (got[1:] if got else None) == elsewhere
    if elsewhere:
        code, reason = _outcome(registry, utterance, call.to_text())
        assert code is OutcomeCode.NO_ACTION and f"{elsewhere[0]!r} asks for {elsewhere[1]}" in reason


@pytest.mark.parametrize(
    ("utterance", "plain", "owner"),
    [
        ("把我妈的降压药扔垃圾桶里", "send_message('mom', '降压药扔垃圾桶里')", ("contact", "mom", "我妈的")),
        (
            "tell mom's friend the party is off",
            "send_message('mom', 'the party is off')",
            ("contact", "mom", "mom's"),
        ),
        ("text mom that dad's car is fixed", "send_message('mom', \"dad's car is fixed\")", None),
        ("跟妈妈说我的钥匙找到了", "send_message('mom', '我的钥匙找到了')", None),
        ("tell mom mom's keys are here", "send_message('mom', \"mom's keys are here\")", None),
    ],
)
def test_a_contact_said_only_as_an_owner_is_no_recipient(registry, utterance, plain, owner):
    from octopus_ros.functions.mentions import possessor_only

    call = parse_plain(plain, registry)
    assert possessor_only(registry.by_name(call.function), call, utterance) == owner
    code, reason = _outcome(registry, utterance, call.to_text())
    if owner:
        assert code is OutcomeCode.NO_ACTION and "only as whose something is" in reason, reason


@pytest.mark.parametrize(
    ("utterance", "plain", "corrected"),
    [
        ("go at seventy percent, no, make it forty", "set_speed(0.7)", ("value", 0.7, 40)),
        ("go at seventy percent, no, make it forty percent", "set_speed(0.7)", ("value", 0.7, 0.4)),
        ("half speed, no wait, make it a quarter", "set_speed(0.5)", ("value", 0.5, 0.25)),
        ("速度调到七成，不对，五成", "set_speed(0.7)", ("value", 0.7, 0.5)),
        ("go at seventy percent, no, make it forty percent", "set_speed(0.4)", None),
        ("slow down to 50%, we have 2 guests", "set_speed(0.5)", None),
        ("go at half speed, there are two cats, no kidding", "set_speed(0.5)", None),
    ],
)
def test_a_number_taken_back_for_another(registry, utterance, plain, corrected):
    from octopus_ros.functions.mentions import corrected_args

    call = parse_plain(plain, registry)
    assert corrected_args(registry.by_name("set_speed"), call, utterance) == (
        [corrected] if corrected else []
    )
    if corrected:
        code, reason = _outcome(registry, utterance, call.to_text())
        assert code is OutcomeCode.NO_ACTION and "took the value" in reason, reason


@pytest.mark.parametrize(
    ("utterance", "plain", "said"),
    [
        ("Call my mom and put her on speaker.", "send_message('mom', 'put her on speaker')", "call"),
        ("给我妈打个电话，开免提", "send_message('mom', '开免提')", "打个电话"),
        ("给我妈打个电话", "send_message('mom', '电话')", "打个电话"),  # the copy took part of it
        ("text mom to call me", "send_message('mom', 'to call me')", None),  # the message's own call
        ("call mom and tell her dinner is ready", "send_message('mom', 'dinner is ready')", None),
        ("跟妈妈说给我回个电话", "send_message('mom', '给我回个电话')", None),
    ],
)
def test_a_phone_call_is_no_message(registry, utterance, plain, said):
    from octopus_ros.functions.mentions import phone_call

    call = parse_plain(plain, registry)
    assert phone_call(registry.by_name("send_message"), call, utterance) == said
    if said:
        code, reason = _outcome(registry, utterance, call.to_text())
        assert code is OutcomeCode.NO_ACTION and "phone call" in reason, reason


@pytest.mark.parametrize(
    ("utterance", "plain", "word"),
    [
        (
            "Go to the office, I'll meet you there in a minute.",
            "send_message('office', \"I'll meet you there in a minute\")",
            "go",
        ),
        ("去办公室，我一会儿过去", "send_message('office', '我一会儿过去')", "去"),
        ("send it to the office: the report is done", "send_message('office', 'the report is done')", None),
        ("给办公室发消息，我晚点到", "send_message('office', '我晚点到')", None),
        (
            "Write to the office that I'm stuck in traffic",
            "send_message('office', \"I'm stuck in traffic\")",
            None,
        ),
        ("um, relay to my dad that the package came", "send_message('dad', 'the package came')", None),
    ],
)
def test_a_recipient_said_as_where_to_go(registry, utterance, plain, word):
    from octopus_ros.functions.mentions import recipient_as_destination

    call = parse_plain(plain, registry)
    got = recipient_as_destination(registry, registry.by_name("send_message"), call, utterance)
    assert (got[2] if got else None) == word


@pytest.mark.parametrize(
    ("utterance", "plain", "negated"),
    [
        ("香蕉放桌子上，别放地上", "place('banana', 'floor')", [("location", "floor")]),
        ("香蕉放桌子上，别放地上", "place('banana', 'table')", []),
        ("put it on the table, not on the floor", "place('red cup', 'floor')", [("location", "floor")]),
        ("put the cup on the floor", "place('red cup', 'floor')", []),
        ("你能不能去办公室等我", "navigate_to('office')", []),  # 能不能 asks
        ("please stop in the kitchen", "navigate_to('kitchen')", []),  # where to stop
        ("avoid the kitchen, go to the office", "navigate_to('kitchen')", [("place", "kitchen")]),
        ("tell mom not the kitchen", "send_message('mom', 'not the kitchen')", []),  # the message's words
    ],
)
def test_a_value_said_only_as_the_one_not_wanted(registry, utterance, plain, negated):
    from octopus_ros.functions.mentions import negated_values

    call = parse_plain(plain, registry)
    assert negated_values(registry.by_name(call.function), call, utterance) == negated
    if negated:
        code, reason = _outcome(registry, utterance, call.to_text())
        assert code is OutcomeCode.NO_ACTION and "only as the one not wanted" in reason, reason


@pytest.mark.parametrize(
    ("utterance", "plain", "claimed"),
    [
        # a value an argument claims (recycle's bins)
        ("the purple can goes in the recycling, could you take care of it", "pick_up('purple can')",
         ("recycling", "recycling", "recycle")),
        ("这根香蕉坏了，拿去堆肥吧", "pick_up('banana')", ("堆肥", "compost", "recycle")),
        ("Half-eaten red apple on the coffee table, compost it please", "place('red apple', 'table')",
         ("compost", "compost", "recycle")),
        ("throw the banana in the compost", "recycle('banana', 'compost')", None),  # the claiming function
        ("put it on the table, not in the trash", "place('red cup', 'table')", None),  # negated
        ("don't compost the apple yet. Compost it now", "place('red apple', 'table')",
         ("Compost", "compost", "recycle")),  # the plain mention is quoted, not the negated one
        ("tell mom the compost bin is full", "send_message('mom', 'the compost bin is full')", None),  # copied
        ("pick up the red cup", "pick_up('red cup')", None),
        # a word a function claims (take_photo's, stop's)
        ("Grab a quick pic of the living room, the landlord asked for one", "navigate_to('living_room')",
         ("pic", None, "take_photo")),
        ("snap a photo real quick i want to show my mom the new plant", "send_message('mom', 'the new plant')",
         ("photo", None, "take_photo")),
        ("给客厅拍张照，房东说要看看。", "navigate_to('living_room')", ("拍张", None, "take_photo")),
        ("Freeze, I'm on camera right now.", "describe_scene()", ("Freeze", None, "stop")),
        ("don't freeze now, FREEZE!", "describe_scene()", ("FREEZE", None, "stop")),  # the plain mention
        ("站住，你把桌布都拖下来了", "place('yellow shoe', 'table')", ("站住", None, "stop")),
        ("我在打电话呢，你能不能先别动了", "take_photo()", ("别动", None, "stop")),
        ("take a photo of the kitchen", "take_photo()", None),  # the claiming function itself
        ("what's in the picture right now", "describe_scene()", None),  # describe_scene asks with it too
        ("don't take a photo, just go to the kitchen", "navigate_to('kitchen')", None),  # negated
        ("text mom that the photos are ready", "send_message('mom', 'the photos are ready')", None),  # copied
        ("put it in the freezer", "place('red cup', 'box')", None),  # whole words only
        # stop claims "stop": a call lost rather than a stop missed
        ("stop by the kitchen on your way", "navigate_to('kitchen')", ("stop", None, "stop")),
        ("don't stop, keep going to the kitchen", "navigate_to('kitchen')", None),  # negated
        # send_message claims its verb phrases
        ("给办公室发一条 会议改到三点", "navigate_to('office')", ("发一条", None, "send_message")),
        ("go to the office and send them a message that I'm late", "navigate_to('office')",
         ("send them a message", None, "send_message")),
        ("给妈妈发个消息说我到了", "send_message('mom', '我到了')", None),  # the claiming function itself
    ],
)  # fmt: skip
def test_what_another_function_claims(registry, utterance, plain, claimed):
    from octopus_ros.functions.mentions import claimed_elsewhere

    call = parse_plain(plain, registry)
    assert claimed_elsewhere(registry, registry.by_name(call.function), call, utterance) == claimed
    if claimed:
        code, reason = _outcome(registry, utterance, call.to_text())
        assert code is OutcomeCode.NO_ACTION and f"which asks for {claimed[2]}" in reason, reason


def test_function_claims_are_words_per_language():
    spec = FunctionSpec(
        name="snap", token=0, description={"en": "Take a photo."}, claims={"en": ["photo", " pic "]}
    )
    assert spec.claims == {"en": ("photo", "pic")}
    assert spec.to_dict()["claims"] == {"en": ["photo", "pic"]}
    assert "claims" not in FunctionSpec(name="snap", token=0, description={"en": "x"}).to_dict()
    for bad, match in [
        ("photo", "mapping of language"),
        ({"en": "photo"}, "non-empty list of words"),
        ({"en": []}, "non-empty list of words"),
        ({"en": ["photo", " "]}, "non-empty words"),
    ]:
        with pytest.raises(RegistryError, match=match):
            FunctionSpec(name="snap", token=0, description={"en": "x"}, claims=bad)
    with pytest.raises(RegistryError, match="cannot have claims"):
        FunctionSpec(name="none", token=0, decline=True, description={"en": "x"}, claims={"en": ["no"]})
    with pytest.raises(RegistryError, match="claims"):
        FunctionRegistry.from_dict(
            {"version": 1, "functions": [
                {"name": "snap", "token": 0, "description": {"en": "x"}, "claims": {"en": 3}},
                {"name": "no_action", "token": 1, "decline": True, "description": {"en": "x"}},
            ]}
        )  # fmt: skip


def test_claims_is_for_an_enum():
    assert ArgSpec(name="bin", type="enum", values=("a", "b"), claims=True).to_dict()["claims"] is True
    with pytest.raises(RegistryError, match="claims is only valid for enum"):
        ArgSpec(name="text", type="string", claims=True)
    with pytest.raises(RegistryError, match="claims must be true or false"):
        ArgSpec(name="bin", type="enum", values=("a",), claims="yes")


@pytest.mark.parametrize(
    ("utterance", "after"),
    [
        ("你拿那个白色的杯子……哦不对，拿橙色的碗", "，拿橙色的碗"),
        ("grab the red cup, no wait, the blue cup", ", the blue cup"),
        ("grab the red cup", None),
    ],
)
def test_what_is_said_after_a_correction(utterance, after):
    from octopus_ros.functions.mentions import after_correction

    assert after_correction(utterance) == after


@pytest.mark.parametrize(
    ("utterance", "plain", "disposed"),
    [
        ("把客厅拖一下地", "navigate_to('living_room')", ("place", "living_room")),
        ("你能不能把整个客厅拖一下", "navigate_to('living_room')", ("place", "living_room")),
        ("把桌子擦一下", "place('red cup', 'table')", ("location", "table")),
        ("去客厅", "navigate_to('living_room')", None),
        ("把我带到客厅", "navigate_to('living_room')", None),  # 把 marks me; the living room is where to
        ("把红杯子放桌子上", "place('red cup', 'table')", None),
        ("把狗喂了", "feed_pet('dog')", None),  # feed_pet's phrasings say the pet after 把
        ("把这句话发给妈妈", "send_message('mom', '这句话')", None),  # a recipient
    ],
)
def test_a_value_said_only_as_what_ba_acts_on(registry, utterance, plain, disposed):
    from octopus_ros.functions.mentions import disposed_value

    call = parse_plain(plain, registry)
    assert disposed_value(registry.by_name(call.function), call, utterance) == disposed
    if disposed and call.function == "navigate_to":
        code, reason = _outcome(registry, utterance, call.to_text())
        assert code is OutcomeCode.NO_ACTION and "only as what 把 acts on" in reason, reason


@pytest.mark.parametrize(
    ("utterance", "code"),
    [
        ("whoa whoa stop stop", OutcomeCode.OK),  # the words and the model agree on stopping
        ("立刻停住，阿姨刚拖完地。", OutcomeCode.OK),
        ("call an uber", OutcomeCode.NO_ACTION),  # a stop nobody asked for: the limits hold
        ("don't stop, whoa whoa", OutcomeCode.NO_ACTION),  # negated: not asked for
        ("look around for the blue ball, the kids won't stop crying", OutcomeCode.NO_ACTION),
    ],
)
def test_a_stop_asked_for_in_words_is_not_held_back_by_the_novelty_limits(registry, utterance, code):
    call = parse_call("<nexa_3>()<nexa_end>", registry)
    decision = SimpleNamespace(
        call=call, error=None, confidence=0.99, text_novelty=0.5, request_novelty=0.9999, image_novelty=3.0
    )
    got, reason = decision_outcome(
        decision,
        registry,
        functools.partial(validate_call, registry=registry),
        allowlist=None,
        threshold=0.5,
        max_text_novelty=0.3,
        max_request_novelty=0.99,
        max_image_novelty=1.0,
        utterance=utterance,
    )
    assert got == code, reason
    if code is OutcomeCode.NO_ACTION:
        assert "not understood" in reason, reason


@pytest.mark.parametrize(
    ("utterance", "plain", "chore"),
    [
        ("pick up the red cup and wash it for me", "pick_up('red cup')", "wash"),
        ("把红杯子拿起来洗一洗", "pick_up('red cup')", "洗一洗"),
        ("go to the kitchen and cook dinner", "navigate_to('kitchen')", "cook"),
        ("grab the blue bowl, then wipe the table", "pick_up('blue bowl')", "wipe"),
        ("去厨房拖地", "navigate_to('kitchen')", "拖地"),
        ("pick up the red cup", "pick_up('red cup')", None),
        ("pick up the cup I just washed", "pick_up('red cup')", None),  # done, not asked
        ("我刚洗干净的杯子，放架子上", "place('red cup', 'shelf')", None),  # done
        ("把洗干净的碗放桌上", "place('red bowl', 'table')", None),  # a cup that is clean
        ("pick up the cup and don't wash it", "pick_up('red cup')", None),  # negated
        ("put the clean cup on the shelf", "place('red cup', 'shelf')", None),  # an adjective
        ("tell mom to wash the dishes", "send_message('mom', 'wash the dishes')", None),  # copied
        ("stop and wash your wheels", "stop()", None),  # a stop is never held back
        ("go to the bedroom and wake up my son", "navigate_to('bedroom')", "wake"),
        ("去卧室把我儿子叫醒", "navigate_to('bedroom')", "叫醒"),  # 把我: whose son, not who wakes him
        ("开一下大门", "navigate_to('front_door')", "开一下"),
        ("麻烦你把那个红苹果拿起来，我洗洗吃", "pick_up('red apple')", None),  # the speaker washes it
        ("我要开始炒菜了，你跟我一起到厨房来吧", "navigate_to('kitchen')", None),  # the speaker cooks
        ("阿姨打扫完了，你拍一张照片留着", "take_photo()", None),  # done
        ("pour some water on the plant", "water_plant()", None),  # watering is pouring
        ("你先离开一下，去卧室待着", "navigate_to('bedroom')", None),  # 离开: leave, not open
        ("妈妈煮饭呢，你去客厅玩", "navigate_to('living_room')", None),  # going on, not asked
        ("修理工来了，去门口看看", "navigate_to('front_door')", None),  # the repairman
    ],
)  # fmt: skip
def test_a_chore_no_function_does(registry, utterance, plain, chore):
    from octopus_ros.functions.chores import other_chore
    from octopus_ros.functions.mentions import blank_copied

    call = parse_plain(plain, registry)
    spec = registry.by_name(call.function)
    assert other_chore(registry, spec, blank_copied(spec, call, utterance)) == chore
    code, reason = _outcome(registry, utterance, call.to_text())
    if chore:
        assert code is OutcomeCode.NO_ACTION and f"asks to {chore!r}, which no function does" in reason, (
            reason
        )
    else:
        assert "no function does" not in reason


def test_a_chore_a_function_does_is_no_other_chore(registry):
    from octopus_ros.functions import FunctionRegistry
    from octopus_ros.functions.chores import other_chore

    data = registry.to_dict()
    data["functions"].append(
        {"name": "wash_dishes", "token": len(data["functions"]), "description": {"en": "Wash the dishes."},
         "examples": {"en": ["wash the dishes", "do the washing up"], "zh": ["洗一洗碗"]}}
    )  # fmt: skip
    washing = FunctionRegistry.from_dict(data)
    spec = washing.by_name("pick_up")
    assert other_chore(washing, spec, "pick up the red cup and wash it") is None
    assert other_chore(washing, spec, "把红杯子拿起来洗一洗") is None
    assert other_chore(washing, spec, "pick up the red cup and cook dinner") == "cook"
