"""The bundled functions' phrasings live in the function registry (``phrasings:`` in
config/functions.yaml, functions/phrasings.py); data/instructions.py reads them from there.

The digests below were recorded at commit 46250ba, before the move, when the phrasings were
literal lists in data/instructions.py (``_SOURCES``), by the same code as ``_digests`` below:
the bundled model's training and evaluation data must not change by moving them. A deliberate
change of the phrasings (or of the world) changes them too: record them again with
``_digests`` and say so in that commit. Recorded again in stop 26: two template messages lost
their ending mark ("happy birthday!", "生日快乐！"), which the model no longer reads
(lean/prompt.py ``model_utterance``); images and the other splits did not change. Recorded again
in stop 31: 94 training phrasings were appended to twelve functions (their ids come after the old
ones, and no held-out mark moved), which changes every split's draw, held-out splits included.
Recorded again in stop 33: 21 training phrasings were appended to send_message (relay forms: "tell
{contact} to {msg}", "跟{contact}讲{msg}", ...); the training and iid draws changed, the held-out
splits (unseen phrasing, unseen colour x object) and every image did not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from octopus_ros.data import instructions, tasks
from octopus_ros.data.instructions import TEMPLATES, load_templates
from octopus_ros.data.tasks import SPLITS, default_splits, generate, instruction_corpus
from octopus_ros.functions import FunctionRegistry, RegistryError, load_default_registry
from octopus_ros.paths import config_path

# sha256 over (instruction, answer, template id, mode) of generate(split, 400, seed), per split and seed
RECORDED = {
    "train/0": "6b7e84c6e7e4cf6da2b7d429e935a79436e4559b8f163e5781f49fe367ccba20",
    "train/1": "fca5737c36a04ed543d87550aaaf117475817df51874e61fd1655e543e4d0da8",
    "iid/0": "fae806e2d48883671d8bafb6b0761b575d62c6face170db05efcce343e7d3982",
    "iid/1": "38c3d46aeb9e0f75f478d94ef653abeda68ec61ca82a04eddda0a7d6e351309e",
    "unseen_phrasing/0": "7f9b75bea84bc235e5210dd4d98d579c5e4df229dbb91a46676c4fa9d29d00f0",
    "unseen_phrasing/1": "f7c34c629889450085567ad799bb85cd079fcf5fdd39faea9ba15d5036158abc",
    "unseen_combo/0": "de2f55301eeb2e8b75160f9335dbde0402e394e2689487580c1810df4046c7bc",
    "unseen_combo/1": "0bff2074f868c7786aa92da36b2263e9da2758f8a7c8238ab5012330a3d1e96d",
}
# sha256 over the images of the same examples rendered at 16 px (the scenes did not move either)
RECORDED_IMAGES = {
    "train/0": "66d96fa4999e80108cfa372b1c54d1b6e48b3e83b3c45a7f2e2571f3caeb7cd4",
    "train/1": "d2dc2b637da76fefb3e7076c0084c5b9bed0042c0d6f30eac31d534a92827efa",
    "iid/0": "2c30ea5fc658bfc7af51e1877c7ac6828f02f3c7f709222f368093e116626881",
    "iid/1": "4e27640dc1d76ebd0ea58ec6ef2be823fb26ee57c218f1d7448047b90c47d726",
    "unseen_phrasing/0": "25e7542a958c7a92ec93651a55603310f48d45bb749a0ef4acd717c43c11de51",
    "unseen_phrasing/1": "931ccc28338bccca84e7e2a5c4c42bdf197e5da41eee60691f45fc3a5a669a1f",
    "unseen_combo/0": "9b7113118cbcd3609f7ac72f191c7024ef866716d460246c1e5ea7a18be8168e",
    "unseen_combo/1": "bf195c2a5b6aa3fe5a97d99ae7ac0277e3b5b940aef17eaa716ef8dae88d3945",
}
RECORDED_CORPUS = (
    "bd17a29f64c2c73d6d6cec5edf9984602f01b0aa62c86987871c1d2788fafe1a"  # instruction_corpus(seed=0)
)
# instruction_corpus(seed=3, split="unseen_phrasing")
RECORDED_HELDOUT_CORPUS = "a5a291e4fb2b7cefc6155ce86797ddb1f0a8b3f0b28a0e39eb8734cf0a914d34"
# sha256 over (id, function, language, text, mode, repr(fixed)) of every template, in order
RECORDED_TEMPLATES = "2eb6d99bbc7eae209e1f3f954beb63e807631f4eadc0811920f1e4835f019a28"
# sha256 of the sorted held-out template ids of default_splits(), one per line
RECORDED_HELDOUT = "9af8c20e0ab2d2dd00563396be4fada8de74edb16310575dc7b36a01bf5a5706"
N_TEMPLATES, N_HELDOUT = 579, 110


def _digests(split: str, seed: int, **kwargs) -> tuple[str, str]:
    text, images = hashlib.sha256(), hashlib.sha256()
    for ex in generate(split, 400, seed, image_size=16, **kwargs):
        text.update("\x1f".join((ex.instruction, ex.answer, ex.template, ex.mode)).encode() + b"\x1e")
        images.update(ex.image.tobytes())
    return text.hexdigest(), images.hexdigest()


def _corpus_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode() + b"\x1e")
    return h.hexdigest()


def _templates_digest(templates) -> str:
    h = hashlib.sha256()
    for t in templates:
        h.update(
            "\x1f".join((t.id, t.function, t.language, t.text, t.mode, repr(t.fixed))).encode() + b"\x1e"
        )
    return h.hexdigest()


@pytest.mark.parametrize("split", SPLITS)
def test_generated_examples_are_those_of_the_literal_lists(split):
    for seed in (0, 1):
        text, images = _digests(split, seed)
        assert text == RECORDED[f"{split}/{seed}"], (split, seed)
        assert images == RECORDED_IMAGES[f"{split}/{seed}"], (split, seed)


def test_corpus_templates_and_heldout_set_are_those_of_the_literal_lists():
    assert _corpus_digest(instruction_corpus(seed=0)) == RECORDED_CORPUS
    assert _corpus_digest(instruction_corpus(seed=3, split="unseen_phrasing")) == RECORDED_HELDOUT_CORPUS
    assert len(TEMPLATES) == N_TEMPLATES
    assert _templates_digest(TEMPLATES) == RECORDED_TEMPLATES
    heldout = default_splits().heldout_templates
    assert len(heldout) == N_HELDOUT
    assert hashlib.sha256("\n".join(sorted(heldout)).encode()).hexdigest() == RECORDED_HELDOUT
    # the split is the registry's heldout marks
    assert heldout == {t.id for t in TEMPLATES if t.heldout}
    registry = load_default_registry()
    marked = {
        f"{spec.name}.{lang}.{i:02d}"
        for spec in registry.functions
        if spec.phrasings is not None
        for lang, items in spec.phrasings.languages
        for i, p in enumerate(items)
        if p.heldout
    }
    assert heldout == marked


def test_registry_round_trip_keeps_the_phrasings():
    registry = load_default_registry()
    again = FunctionRegistry.from_dict(registry.to_dict())
    assert again == registry
    assert load_templates(again) == TEMPLATES


def _edited_copy(tmp_path, old: str, new: str) -> tuple[Path, int]:
    """A copy of the bundled registry with its (unique) line ``old`` replaced by ``new``: (path, line)."""
    text = config_path("functions.yaml").read_text(encoding="utf-8")
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if line == old]
    assert len(hits) == 1, old
    lines[hits[0]] = new
    path = tmp_path / "functions.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, hits[0] + 1


@pytest.fixture
def use_templates(monkeypatch):
    """Make data generation read the given templates (as if they were the bundled registry's)."""

    def use(templates):
        monkeypatch.setattr(instructions, "TEMPLATES", templates)
        monkeypatch.setattr(instructions, "TEMPLATES_BY_ID", {t.id: t for t in templates})
        monkeypatch.setattr(tasks, "TEMPLATES", templates)
        default_splits.cache_clear()

    yield use
    monkeypatch.undo()
    default_splits.cache_clear()


def test_an_edited_phrasing_changes_what_is_generated(tmp_path, use_templates):
    path, _ = _edited_copy(
        tmp_path, "        - can you pick up the {obj}?", "        - can you seize the {obj}?"
    )
    edited = load_templates(FunctionRegistry.from_yaml(path))
    assert edited[2].id == "pick_up.en.02" and edited[2].text == "can you seize the {obj}?"
    use_templates(edited)
    examples = generate("train", 300, 0, image_size=16, functions=["pick_up"], languages=["en"])
    seized = [ex for ex in examples if ex.template == "pick_up.en.02"]
    assert seized and all("seize" in ex.instruction.lower() for ex in seized)
    corpus = instruction_corpus(seed=0)
    assert sum("seize" in text.lower() for text in corpus) == 8  # n_per_template
    assert _corpus_digest(corpus) != RECORDED_CORPUS


def test_a_heldout_mark_moves_a_phrasing_out_of_training(tmp_path, use_templates):
    assert "pick_up.en.00" not in default_splits().heldout_templates
    path, _ = _edited_copy(
        tmp_path, "        - pick up the {obj}", "        - {say: 'pick up the {obj}', heldout: true}"
    )
    edited = load_templates(FunctionRegistry.from_yaml(path))
    assert edited[0].id == "pick_up.en.00" and edited[0].heldout
    use_templates(edited)
    splits = default_splits()
    assert splits.heldout_templates == {t.id for t in edited if t.heldout}
    assert "pick_up.en.00" in splits.heldout_templates
    assert all(t.id != "pick_up.en.00" for t in splits.templates("pick_up", "en", heldout=False))
    held = generate("unseen_phrasing", 200, 0, image_size=16, functions=["pick_up"], languages=["en"])
    assert any(ex.template == "pick_up.en.00" for ex in held)


NEW_VERBS = ("nab", "snatch", "collect", "raise", "retrieve", "hoist", "seize", "take up", "pluck", "clutch")


def test_an_appended_phrasing_moves_no_heldout_pair_or_phrasing(tmp_path, use_templates):
    # Until stop 31 the held-out colour x object pairs were recomputed from make_splits(0), whose
    # random stream passes through every phrasing group first: appending phrasings moved all
    # eleven pairs, so a model continued on the new data trained on the old held-out pairs. (One
    # to five more phrasings in a group happened to leave numpy's stream where it was; ten do not.)
    before = default_splits()
    path, _ = _edited_copy(
        tmp_path,
        "        - 'I''d like you to take the {obj}'",  # pick_up's last English phrasing
        "        - 'I''d like you to take the {obj}'\n"
        + "\n".join(f"        - {v} the {{obj}}" for v in NEW_VERBS),
    )
    edited = load_templates(FunctionRegistry.from_yaml(path))
    assert len(edited) == len(TEMPLATES) + len(NEW_VERBS)
    assert all(any(t.text == f"{v} the {{obj}}" and not t.heldout for t in edited) for v in NEW_VERBS)
    use_templates(edited)
    after = default_splits()
    assert after.heldout_combos == before.heldout_combos
    assert after.heldout_templates == before.heldout_templates


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "        - can you pick up the {obj}?",
            "        - can you pick up the {thing}?",
            "unknown slot {thing}",
        ),
        (
            "        - {say: pick that up, mode: deictic, heldout: true}",
            "        - {say: pick that up, mode: pointing, heldout: true}",
            "mode 'pointing' must be one of named, deictic, text",
        ),
        (
            "        - {say: pick that up, mode: deictic, heldout: true}",
            "        - {say: pick that up, mood: deictic, heldout: true}",
            "unknown key(s) ['mood']",
        ),
        (
            "        - {say: full speed ahead, args: {value: 1.0}}",
            "        - {say: full speed ahead, args: {value: 2.0}}",
            "args: value:",
        ),
        (
            "        - {say: full speed ahead, args: {value: 1.0}}",
            "        - {say: full speed ahead, args: {speed: 1.0}}",
            "'speed' is not an argument of set_speed",
        ),
        ("        - halt", "        - {say: halt, heldout: yes please}", "heldout must be true or false"),
        ("        - pick up the {obj}", "        - pick up the {obj!r}", "must be a plain {slot} name"),
    ],
)
def test_a_broken_phrasing_is_refused_with_file_and_line(tmp_path, old, new, message):
    path, line = _edited_copy(tmp_path, old, new)
    with pytest.raises(RegistryError) as err:
        FunctionRegistry.from_yaml(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}: functions["), text
    assert message in text, text


def test_broken_phrasing_sets_are_refused_with_file_and_line(tmp_path):
    # a slot that says no argument of the function
    path, line = _edited_copy(tmp_path, "      slots: {obj: object}", "      slots: {obj: thing}")
    with pytest.raises(RegistryError, match="not an argument of pick_up") as err:
        FunctionRegistry.from_yaml(path)
    assert str(err.value).startswith(f"{path}:{line}: functions[0] 'pick_up': phrasings: slot {{obj}}")
    # a slot the synthetic world has no words for: the registry accepts it, the world refuses it
    path, line = _edited_copy(
        tmp_path, "      slots: {obj: object}", "      slots: {obj: object, thing: object}"
    )
    registry = FunctionRegistry.from_yaml(path)
    with pytest.raises(ValueError, match=r"no words for slot \{thing\}") as err:
        load_templates(registry)
    assert str(err.value).startswith(f"{path}:{line}: pick_up phrasings")


def test_every_language_keeps_a_training_phrasing():
    registry = load_default_registry()
    raw = registry.by_name("stop").to_dict()
    raw["phrasings"]["zh"] = [
        {"say": p if isinstance(p, str) else p["say"], "heldout": True} for p in raw["phrasings"]["zh"]
    ]
    with pytest.raises(RegistryError, match=r"phrasings\[zh\]: every phrasing is heldout"):
        FunctionRegistry.from_dict({"version": 1, "functions": [raw, registry.decline_function.to_dict()]})


def test_the_world_has_words_for_every_slot_it_accepts():
    from octopus_ros.data.instructions import WORLD_SLOTS, _slot_patterns

    for lang in ("en", "zh"):
        assert set(_slot_patterns(lang)) == set(WORLD_SLOTS)
