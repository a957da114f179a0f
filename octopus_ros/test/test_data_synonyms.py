"""English verb synonyms from WordNet for stage-4 training (data/synonyms.py): the parse, where a
verb may be replaced, and that the variants keep off the held-out phrasings and the natural set."""

from __future__ import annotations

import numpy as np
import pytest

from octopus_ros.data.augment import protected_vocabulary
from octopus_ros.data.decline_corpus import normalise
from octopus_ros.data.instructions import TEMPLATES
from octopus_ros.data.natural import load_natural_set
from octopus_ros.data.synonyms import (
    NOT_REPLACED,
    SynonymVariation,
    default_path,
    heldout_pattern,
    load_table,
    parse_wordnet,
    spans,
    substitute,
)

# A WordNet in miniature, in the files' own formats (index.verb: lemma pos synset_cnt p_cnt
# [pointers] sense_cnt tagsense_cnt offsets...; data.verb: offset lex_filenum ss_type w_cnt
# (word lex_id)... ; cntlist.rev: sense_key sense_number tag_cnt).
INDEX = """\
  1 This software and database is being provided to you, the LICENSEE, by
fetch v 2 1 @ 2 1 00000001 00000009
bring v 1 1 @ 1 1 00000001
convey v 2 1 @ 2 1 00000005 00000001
find v 1 1 @ 1 1 00000002
happen v 1 1 @ 1 1 00000003
chance v 1 1 @ 1 1 00000002
pick_up v 1 1 @ 1 1 00000004
lift_up v 1 1 @ 1 1 00000004
gather_up v 1 1 @ 1 1 00000004
locomote v 1 1 @ 1 1 00000004
get v 20 1 @ 20 1 00000004 00000010 00000011 00000012 00000013 00000014 00000015 00000016 00000017 00000018 00000019 00000020 00000021 00000022 00000023 00000024 00000025 00000026 00000027 00000028
"""
DATA = """\
  1 This software and database is being provided to you, the LICENSEE, by
00000001 35 v 03 fetch 0 bring 0 convey 0 000 | go or come after and bring back
00000002 35 v 02 find 0 chance 0 000 | come upon, as if by accident
00000003 30 v 01 happen 0 000 | come to pass
00000004 38 v 05 pick_up 1 lift_up 0 gather_up 0 locomote 0 get 2 000 | take and lift upward
00000005 32 v 01 convey 1 000 | make known
"""
CNT = """\
fetch%2:35:00:: 1 3
bring%2:35:00:: 1 19
convey%2:32:01:: 1 9
chance%2:35:00:: 1 2
lift_up%2:38:00:: 1 1
gather_up%2:38:00:: 1 2
get%2:38:02:: 1 40
pick_up%2:38:01:: 1 9
"""


def test_first_senses_shared_tagged_and_not_too_general():
    table = parse_wordnet(INDEX, DATA, CNT, max_senses=15)
    # fetch and bring share their first sense; convey's first sense is "make known": not offered
    assert table["fetch"] == ["bring"]
    assert table["bring"] == ["fetch"]
    # find's first sense is "come upon by chance"; chance's first is that too, but happen's is not
    assert table["find"] == ["chance"]
    # multi-word lemmas with spaces; locomote never tagged in that sense, get has 20 senses
    assert table["pick up"] == ["lift up", "gather up"]
    assert "locomote" not in table["lift up"] and "get" not in table["pick up"]
    assert "happen" not in table  # its only synset has no other word


def test_malformed_wordnet_is_an_error():
    with pytest.raises(ValueError, match="index.verb"):
        parse_wordnet("fetch v 2 1 @ 2 1 00000001\n", DATA, CNT)
    with pytest.raises(ValueError, match="no synset 00000009"):
        parse_wordnet("fetch v 1 1 @ 1 1 00000009\n", DATA, CNT)


TABLE = {
    "pick up": ("lift up",),
    "fetch": ("bring",),
    "water": ("irrigate",),
    "please": ("delight",),
    "cup": ("transfer to a cup",),
    "off": ("murder",),
}


def test_a_verb_is_replaced_where_a_verb_stands():
    rng = np.random.default_rng(0)
    protected = {"red", "cup", "plant"}
    assert substitute("Pick up the red cup!", TABLE, rng, protected) == "Lift up the red cup!"
    assert substitute("could you fetch the red cup, please?", TABLE, rng, protected) == (
        "could you bring the red cup, please?"
    )
    assert substitute("ok, water it", TABLE, rng, protected) == "ok, irrigate it"
    # a noun ("needs water"), a particle ("off"), a protected slot word and "please" stay
    assert substitute("the plant needs water", TABLE, rng, protected) is None
    assert substitute("take it off the shelf", TABLE, rng, protected) is None
    assert substitute("cup", TABLE, rng, protected) is None
    assert "please" in NOT_REPLACED and substitute("please", TABLE, rng, protected) is None
    # after "please" a verb stands
    assert spans("please fetch it", TABLE) == [(1, 2)]


def test_variants_keep_off_heldout_phrasings_and_the_natural_set():
    pattern = heldout_pattern("could you bring me the {obj}?")
    assert pattern.search(normalise("Could you bring me the red cup")) and not pattern.search("bring me")
    assert heldout_pattern("{obj}") is None
    v = SynonymVariation(TABLE, frozenset({"red", "cup"}), heldout=(pattern,))
    rng = np.random.default_rng(0)
    assert v.vary("could you fetch me the red cup?", rng) is None  # would say the held-out phrasing
    assert v.vary("fetch the red cup", rng) == "bring the red cup"
    v = SynonymVariation(TABLE, frozenset({"red", "cup"}), avoid=frozenset({"bring the red cup"}))
    assert v.vary("fetch the red cup", rng) is None


@pytest.mark.skipif(not default_path().is_file(), reason="synonym table not built (make setup builds it)")
def test_built_table_varies_the_bundled_phrasings_and_never_says_what_is_measured():
    table = load_table()
    assert "lift up" in table["pick up"] and table["water"] == ("irrigate",)
    v = SynonymVariation.for_training()
    en, _ = protected_vocabulary()
    natural = {normalise(i.text) for i in load_natural_set() if i.language == "en"}
    rng = np.random.default_rng(0)
    varied = 0
    for t in TEMPLATES:
        if t.language != "en" or t.heldout or "{" in t.text:
            continue
        for _ in range(5):
            out = v.vary(t.text, rng)
            if out is None:
                continue
            varied += 1
            assert normalise(out) not in natural
            before = normalise(t.text)
            assert not any(p.search(normalise(out)) and not p.search(before) for p in v.heldout)
            # slot words survive: every protected word of the phrasing is still there
            assert {w for w in before.split() if w in v.protected} <= set(normalise(out).split())
    assert varied > 20


def test_every_variant_and_the_plain_novelty_vocabulary():
    from types import SimpleNamespace

    from octopus_ros.functions import load_default_registry
    from octopus_ros.training import novelty_profile

    v = SynonymVariation({"pick up": ("lift up", "gather up"), "fetch": ("bring",)}, frozenset({"cup"}))
    assert v.variants("Pick up the cup, then fetch it") == [
        "Lift up the cup, then fetch it",
        "Gather up the cup, then fetch it",
        "Pick up the cup, then bring it",
    ]
    records = [
        {
            "instruction": "pick up the red cup",
            "answer": "<nexa_0>('red cup')<nexa_end>",
            "function": "pick_up",
            "language": "en",
        },
    ]
    registry = load_default_registry()
    plain = SimpleNamespace(synonyms=0.0, augment=0.5, answer_format="functional")
    assert novelty_profile.training_texts(records, registry, plain) == ["pick up the red cup"]


@pytest.mark.skipif(not default_path().is_file(), reason="synonym table not built (make setup builds it)")
def test_the_novelty_vocabulary_learns_the_synonyms_trained_on():
    from types import SimpleNamespace

    from octopus_ros.functions import load_default_registry
    from octopus_ros.training import novelty_profile

    records = [
        {
            "instruction": "pick up the red cup",
            "answer": "<nexa_0>('red cup')<nexa_end>",
            "function": "pick_up",
            "language": "en",
        },
    ]
    varied = SimpleNamespace(synonyms=1.0, augment=0.5, answer_format="functional")
    texts = novelty_profile.training_texts(records, load_default_registry(), varied)
    assert "lift up the red cup" in texts and texts[0] == "pick up the red cup"
