"""NOT_IN_VIEW (issue 12 item 3): the decision rule and the engine, with scripted groundings."""

from __future__ import annotations

from dataclasses import dataclass

from test_runtime_engine import FakeCall, FakeDecision, Registry, ScriptedModel

from octopus_ros.model.grounding import Grounding
from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome


@dataclass
class Decision(FakeDecision):
    grounding: Grounding | None = None


def outcome(decision, **kw):
    return decision_outcome(
        decision, Registry(), lambda call, allowlist=None: None, allowlist=None, threshold=0.5, **kw
    )


PICK = FakeCall("pick_up", 0)


def test_a_call_whose_object_is_not_in_view_is_refused():
    absent = Decision(PICK, None, 0.99, grounding=Grounding("red cup", True, 0.03, "cup", "red", True))
    code, reason = outcome(absent, grounding_threshold=0.5)
    assert code == OutcomeCode.NOT_IN_VIEW
    assert reason == "'red cup' is not in view (score 0.03 < grounding_threshold 0.50); pick_up not published"
    assert outcome(absent)[0] == OutcomeCode.OK  # no threshold: no check
    assert outcome(absent, grounding_threshold=0.02)[0] == OutcomeCode.OK
    present = Decision(PICK, None, 0.99, grounding=Grounding("red cup", True, 0.97, "cup", "red", True))
    assert outcome(present, grounding_threshold=0.5)[0] == OutcomeCode.OK


def test_a_named_colour_that_is_another_colour_in_view_is_refused():
    wrong = Grounding("purple book", True, 0.98, "book", "purple", True, 0.01)
    wrong.other_colour, wrong.other_score = "green book", 0.9
    d = Decision(FakeCall("pick_up", 0), None, 0.99, grounding=wrong)
    code, reason = outcome(d, grounding_threshold=0.5)
    assert code == OutcomeCode.NOT_IN_VIEW
    assert reason == (
        "'purple book' is not in view: the green book is (colour score 0.01 against 0.90); pick_up not published"
    )
    assert outcome(d)[0] == OutcomeCode.OK  # grounding off: no colour check either


def test_what_is_never_blocked():
    # a phrase the head cannot ground (unknown object word): reported, not blocked
    unknown = Decision(PICK, None, 0.99, grounding=Grounding("unicorn", False, reason="no object"))
    assert outcome(unknown, grounding_threshold=0.9)[0] == OutcomeCode.OK
    # a model without a head, or a call that needs no view: no grounding at all
    assert outcome(Decision(PICK, None, 0.99), grounding_threshold=0.9)[0] == OutcomeCode.OK
    # low confidence is decided first
    absent_low = Decision(PICK, None, 0.2, grounding=Grounding("cup", True, 0.01, "cup"))
    assert outcome(absent_low, grounding_threshold=0.5)[0] == OutcomeCode.REJECTED_LOW_CONFIDENCE
    # the model's own decline keeps its outcome
    decline = Decision(FakeCall("no_action", 12), None, 0.9, grounding=Grounding("cup", True, 0.0, "cup"))
    assert outcome(decline, grounding_threshold=0.5)[0] == OutcomeCode.NO_ACTION


def test_engine_refuses_not_in_view_and_the_threshold_is_live(harness):
    absent = Grounding("blue ball", True, 0.1, "ball", "blue", True)
    decisions = [
        Decision(PICK, None, 0.99, "<nexa_0>('blue ball')<nexa_end>", grounding=absent),
        Decision(PICK, None, 0.99, "<nexa_0>('blue ball')<nexa_end>", grounding=absent),
    ]
    h = harness(model=ScriptedModel(decisions), prefetch_rate=0, rate_limit=0, grounding_threshold=0.5)
    h.frame()
    h.say("pick up the blue ball")
    first = h.wait(1)[0]
    assert first.code == OutcomeCode.NOT_IN_VIEW and first.reason.startswith("'blue ball' is not in view")
    h.engine.config.grounding_threshold = 0.0  # off (the node's dynamic parameter sets this)
    h.say("pick up the blue ball")
    assert h.wait(2)[1].code == OutcomeCode.OK
    assert h.engine.snapshot()["counts"]["outcome_NOT_IN_VIEW"] == 1


def test_grounding_threshold_setting_means():
    from types import SimpleNamespace

    from octopus_ros.runtime.outcomes import grounding_threshold_for

    with_head = SimpleNamespace(grounding=SimpleNamespace(threshold=0.22))
    without = SimpleNamespace(grounding=None)
    assert grounding_threshold_for(-1.0, with_head) == 0.22  # the head's own validated threshold
    assert grounding_threshold_for(-1.0, without) is None  # no head: nothing to check
    assert grounding_threshold_for(0.0, with_head) is None  # off
    assert grounding_threshold_for(0.4, with_head) == 0.4
    from octopus_ros.runtime.engine import EngineConfig

    assert EngineConfig().grounding_threshold < 0  # on by default, at the head's threshold


def test_a_call_on_another_object_than_the_one_named_is_declined():
    swapped = Decision(PICK, None, 0.99)
    swapped.object_mismatch = (
        "the request names the green can; the call's object 'green bottle' is another object"
    )
    code, reason = outcome(swapped)
    assert code == OutcomeCode.NO_ACTION
    assert reason == (
        "the request names the green can; the call's object 'green bottle' is another object,"
        " and an object is never swapped (pick_up not published)"
    )
    # the mismatch is decided before the confidence: an unsure swapped call is declined with its reason
    unsure = Decision(PICK, None, 0.2)
    unsure.object_mismatch = swapped.object_mismatch
    assert outcome(unsure) == (code, reason)
    assert outcome(Decision(PICK, None, 0.2))[0] == OutcomeCode.REJECTED_LOW_CONFIDENCE
