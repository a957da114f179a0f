"""make add-function-demo (octopus_ros.training.add_function_demo) at tiny scale, and its inputs.

The demo itself (the bundled model, minutes of LoRA) is a benchmark, not a test. Here its whole
pipeline runs on a random tiny checkpoint for a few steps; the shipped function and held-out
phrasings are checked as data. The node publishing a fine-tuned new function over DDS is
test_training_finetune.py's.
"""

from __future__ import annotations

import json

import pytest
import torch

from octopus_ros.data import decline_corpus
from octopus_ros.functions import FunctionRegistry
from octopus_ros.model import load_checkpoint
from octopus_ros.model.testing import make_tiny_checkpoint
from octopus_ros.paths import config_path, default_model_dir
from octopus_ros.training import add_function_demo as demo

FRAGMENT = config_path("examples/set_light.yaml")
HELDOUT = config_path("examples/set_light_heldout.txt")
HELDOUT_FILES = [config_path(f"examples/{name}") for name in demo.SHIPPED_HELDOUT]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _tiny_corpus(path, n=12):
    """A decline corpus of n English and n Chinese sentences (the real one is built at setup)."""
    rows = [
        {"language": "en", "text": f"the moon is made of cheese number {k}", "source": "test"}
        for k in range(n)
    ]
    rows += [{"language": "zh", "text": f"月亮是奶酪做的第{k}号", "source": "test"} for k in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_demo_pipeline_at_tiny_scale(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(decline_corpus, "default_path", lambda: _tiny_corpus(tmp_path / "corpus.jsonl"))
    base = make_tiny_checkpoint(tmp_path / "base", functions=config_path("functions.yaml"))
    out = tmp_path / "demo"
    argv = ["--base", str(base), "--out", str(out), "--steps", "2", "--batch", "4", "--n", "3"]
    argv += ["--no-natural", "--synthetic-n", "16", "--registry-n", "16", "--decline-n", "8"]
    argv += ["--eval-every", "0", "--no-fail"]
    assert demo.main(argv) == 0

    # the merged checkpoint has the new function at the next token, in its registry and its weights
    registry = FunctionRegistry.from_yaml(out / "model" / "functions.yaml")
    assert registry.by_name("set_light").token == 13
    assert [a.name for a in registry.by_name("set_light").args] == ["room", "on"]
    ckpt = load_checkpoint(out / "model")
    assert ckpt.model.config.num_functions == 14
    assert not (out / "model" / "lora_adapter").exists()  # merged: one plain checkpoint

    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["new_functions"] == ["set_light"] and m["new_tokens"] == ["<nexa_13>"]
    assert [r["split"] for r in m["existing"]] == list(demo.EXISTING_SPLITS)
    # the shipped held-out files, each scored on its own and pooled
    assert list(m["new_function_by_file"]) == list(demo.SHIPPED_HELDOUT)
    assert {k: m["new_function"][k]["n"] for k in ("en", "zh")} == {"en": 154, "zh": 155}
    for lang in ("en", "zh"):
        assert m["new_function"][lang]["right"] == sum(
            f[lang]["right"] for f in m["new_function_by_file"].values()
        )
    assert m["finetune"]["steps"] == 2 and m["finetune"]["stopped_by"] == "steps"
    assert "--lora" in m["finetune"]["argv"] and "--merge" in m["finetune"]["argv"]
    assert "--counterfactual" in m["finetune"]["argv"] and "--contrast" in m["finetune"]["argv"]
    assert m["finetune"]["argv"][m["finetune"]["argv"].index("--data") + 3] == "decline"
    assert (out / "training_curves.png").is_file()

    report = capsys.readouterr().out
    for label in ("en", "zh", *demo.EXISTING_SPLITS, "fine-tuning: LoRA", "targets:", "95 % interval"):
        assert label in report, label
    # 70 + 71 requests leave a wide interval, and the report says how wide
    from octopus_ros.training.evaluate import wilson_interval

    v = m["new_function"]["en"]
    low, high = wilson_interval(v["right"], v["n"])
    assert f"{100 * low:.1f}–{100 * high:.1f} %" in report


@pytest.mark.parametrize("heldout", HELDOUT_FILES, ids=lambda p: p.name)
def test_shipped_heldout_phrasings_are_not_examples(tmp_path, heldout):
    registry, added = demo.compose_registry(
        default_model_dir() / "functions.yaml", FRAGMENT, tmp_path / "functions.yaml"
    )
    assert added == ["set_light"]
    spec = registry.by_name("set_light")
    assert all(10 <= len(spec.examples[lang]) <= 20 for lang in ("en", "zh"))
    items = demo.read_heldout(heldout, registry)
    assert all(sum(i.language == lang for i in items) >= 20 for lang in ("en", "zh"))
    assert {i.function for i in items} == {"set_light"}
    trained = demo.training_utterances(registry, "set_light")
    assert "turn on the kitchen light" in trained and "把书房的灯关" in trained  # the set is complete
    assert [i.where for i in items if i.text.lower() in trained] == []
    assert len({i.text for i in items}) == len(items)


def test_the_shipped_heldout_files_do_not_share_phrasings(tmp_path):
    registry, _ = demo.compose_registry(default_model_dir() / "functions.yaml", FRAGMENT, tmp_path / "f.yaml")
    texts = [{i.text.lower() for i in demo.read_heldout(p, registry)} for p in HELDOUT_FILES]
    assert len(texts) == 6
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            assert not a & b


def test_a_heldout_phrasing_that_the_examples_produce_is_refused(tmp_path):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text(
        HELDOUT.read_text(encoding="utf-8")
        + "en | turn off the hallway light | set_light('hallway', False)\n",
        encoding="utf-8",
    )
    args = demo.build_parser().parse_args(["--heldout", str(heldout), "--out", str(tmp_path / "out")])
    with pytest.raises(demo.DemoError, match=r"heldout.txt:\d+"):
        demo.run(args)


def test_bad_inputs_name_the_file_and_line(tmp_path):
    out = tmp_path / "functions.yaml"
    registry, _ = demo.compose_registry(default_model_dir() / "functions.yaml", FRAGMENT, out)
    bad = tmp_path / "bad.txt"
    bad.write_text(
        "# comment\nen | turn on the kitchen light | set_light('garden', True)\nzh | 开灯\n", "utf-8"
    )
    with pytest.raises(demo.DemoError) as e:
        demo.read_heldout(bad, registry)
    assert f"{bad}:2:" in str(e.value) and "garden" in str(e.value)
    assert f"{bad}:3:" in str(e.value)

    again = tmp_path / "again.yaml"
    again.write_text("functions:\n  - name: stop\n    description: {en: Stop.}\n", "utf-8")
    with pytest.raises(demo.DemoError, match=f"{again}: function 'stop' is already in"):
        demo.compose_registry(default_model_dir() / "functions.yaml", again, tmp_path / "f2.yaml")

    broken = tmp_path / "broken.yaml"
    broken.write_text("functions:\n  - name: set_light\n    description: {en: x}\n    args: 3\n", "utf-8")
    with pytest.raises(demo.DemoError, match=r"f3.yaml:\d+"):
        demo.compose_registry(default_model_dir() / "functions.yaml", broken, tmp_path / "f3.yaml")


def test_the_natural_set_after_is_scored_with_the_calls_the_new_function_owes(tmp_path):
    """The shipped set_light_natural.yaml gives the natural set's two light requests their
    set_light calls under the demo's registry (a decline is right only before); a bad file is
    named."""
    registry, _ = demo.compose_registry(default_model_dir() / "functions.yaml", FRAGMENT, tmp_path / "f.yaml")
    expects, items = demo.read_natural_expects(config_path("examples/set_light_natural.yaml"), registry)
    assert expects == {"en-oos-09": "set_light('hallway', False)", "zh-oos-09": "set_light('hallway', False)"}
    by_id = {it.id: it for it in items}
    assert by_id["en-oos-09"].expected_text(registry) == "<nexa_13>('hallway', False)<nexa_end>"
    assert by_id["en-unsafe-05"].declines  # "light a fire in the bedroom" is no lamp
    # every request of the set that speaks of a light is in the file, and nothing else changed
    lights = {it.id for it in items if any(w in it.text.lower() for w in ("light", "lamp", "灯"))}
    assert lights - {"en-unsafe-05"} == set(expects)
    from octopus_ros.data.natural import load_natural_set

    plain = load_natural_set(registry=registry)
    assert [it for it in plain if it.id not in expects] == [it for it in items if it.id not in expects]
    bad = tmp_path / "bad.yaml"
    bad.write_text("expect:\n  en-nope-01: \"set_light('hallway', True)\"\n", "utf-8")
    with pytest.raises(demo.DemoError, match=f"{bad}: not natural-set ids"):
        demo.read_natural_expects(bad, registry)
    bad.write_text("expect:\n  en-oos-09: \"set_light('garden', True)\"\n", "utf-8")
    with pytest.raises(demo.DemoError, match=f"{bad}: en-oos-09"):
        demo.read_natural_expects(bad, registry)


def test_unsaid_weight_reaches_octopus_finetune_only_when_set(tmp_path):
    from octopus_ros.training import finetune

    def argv(*extra):
        args = demo.build_parser().parse_args(["--out", str(tmp_path), *extra])
        return demo.finetune_argv(args, tmp_path / "base", tmp_path / "f.yaml", tmp_path / "m")

    assert "--unsaid-weight" not in argv()
    passed = argv("--unsaid-weight", "4")
    assert passed[passed.index("--unsaid-weight") + 1] == "4.0"
    cfg = finetune._config(finetune.build_parser().parse_args(passed))
    assert cfg.unsaid_weight == 4.0


def test_targets_count_a_rise_in_published_wrong_as_a_loss():
    before = {"iid": 99.7, "unseen_phrasing": 87.0, "unseen_combo": 92.0, "natural_published_wrong": 27.8}
    before["natural_calls_published_right"] = 67.9
    after = dict(before, iid=98.5, unseen_combo=93.0, natural_published_wrong=29.0)
    rows = {r["split"]: r for r in demo.rows_of(before, after)}
    assert not rows["iid"]["within_target"] and rows["iid"]["lost"] == pytest.approx(1.2)
    assert rows["unseen_combo"]["within_target"] and rows["unseen_combo"]["lost"] == pytest.approx(-1.0)
    assert not rows["natural_published_wrong"]["within_target"]
    assert rows["natural_published_wrong"]["lost"] == pytest.approx(1.2)
    assert rows["unseen_phrasing"]["within_target"] and rows["natural_calls_published_right"]["within_target"]


def test_rows_give_each_split_delta_its_paired_interval():
    """With the per-example results before and after, every split's delta carries its 95 %
    interval (points), centred on the delta; the natural rows (no per-example results) have none;
    the report prints them."""
    before = {"iid": 90.0, "unseen_phrasing": 80.0, "unseen_combo": 90.0, "natural_published_wrong": 2.0}
    after = dict(before, iid=80.0)
    right_before = {s: [True] * 9 + [False] for s in demo.EXISTING_SPLITS}
    right_after = dict(right_before, iid=[True] * 8 + [False, False])
    rows = {r["split"]: r for r in demo.rows_of(before, after, right_before, right_after)}
    low, high = rows["iid"]["ci95"]
    assert (low + high) / 2 == pytest.approx(-10.0) and high - low > 0
    assert rows["unseen_combo"]["ci95"] == [0.0, 0.0]
    assert rows["natural_published_wrong"]["ci95"] is None
    assert all(r["ci95"] is None for r in demo.rows_of(before, after))  # as before: no interval
    m = {
        "new_function": {"en": {"n": 2, "right": 1, "exact_match": 50.0}, "wrong": []},
        "finetune": dict.fromkeys(("lora_r", "steps", "step_budget", "seconds", "seconds_budget"), 1)
        | {"stopped_by": "steps", "total_seconds": 1.0},
        "new_functions": ["set_light"], "new_tokens": ["<nexa_13>"], "base": "b", "n": 10,
        "existing": list(rows.values()), "targets": {"new_function": False, "no_forgetting": False},
    }  # fmt: skip
    report = demo.format_report(m)
    assert f"{low:+.1f} to {high:+.1f}" in report and "delta's 95 % interval" in report


def _rows(model, ids):
    return model.lm.get_input_embeddings().weight[ids].detach().clone()


def test_finetune_rows_new_and_freeze_connector_keep_what_the_model_had(tmp_path):
    """octopus_finetune --rows new --freeze-connector (what the demo runs): the connector and the
    existing functions' rows stay exactly as they were, the new function's row trains; with the
    defaults (--rows all, connector training) both move."""
    from octopus_ros.model.functional_tokens import extend_functional_tokens
    from octopus_ros.training import finetune

    base = make_tiny_checkpoint(tmp_path / "base", functions=config_path("functions.yaml"))
    registry, _ = demo.compose_registry(base / "functions.yaml", FRAGMENT, tmp_path / "functions.yaml")
    start = load_checkpoint(base)
    extend_functional_tokens(
        start.model, start.tokenizer, 14, texts=finetune._function_texts(registry), init="mean", seed=0
    )
    old_ids = [*start.model.config.nexa_token_ids[:13], start.tokenizer.get_vocab()["<nexa_end>"]]
    new_id = start.model.config.nexa_token_ids[13]

    def tune(out, *extra):
        argv = ["--base", str(base), "--functions", str(tmp_path / "functions.yaml"), "--out", str(out)]
        argv += ["--data", "registry", "--heldout", "0", "--lora", "--merge", "--steps", "3", "--batch", "4"]
        argv += ["--lr", "1e-2", "--warmup", "1", "--registry-n", "16", "--eval-every", "0", "--no-accuracy"]
        argv += ["--threads", "1", "--doc-weight", "0", *extra]
        m = finetune.run(finetune.build_parser().parse_args(argv))
        return load_checkpoint(out).model, m

    kept, m = tune(tmp_path / "kept", "--rows", "new", "--freeze-connector")
    assert m["trainable_parameters"]["connector"] == 0
    assert torch.equal(_rows(kept, old_ids), _rows(start.model, old_ids))
    for a, b in zip(kept.connector.parameters(), start.model.connector.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(_rows(kept, [new_id]), _rows(start.model, [new_id]))

    moved, _ = tune(tmp_path / "moved")
    assert not torch.equal(_rows(moved, old_ids), _rows(start.model, old_ids))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(moved.connector.parameters(), start.model.connector.parameters(), strict=True)
    )


def test_decline_source_answers_corpus_sentences_with_the_decline_function(tmp_path, monkeypatch):
    """octopus_finetune --data decline (the demo's negatives): corpus sentences, both languages
    balanced, answered with the registry's decline call; held-out sentences never train."""
    from octopus_ros.functions import make_call
    from octopus_ros.training import finetune

    monkeypatch.setattr(decline_corpus, "default_path", lambda: _tiny_corpus(tmp_path / "corpus.jsonl"))
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    src = finetune.decline_source(registry, 32, finetune.FinetuneConfig(decline_n=12, eval_n=6))
    assert (len(src.train), len(src.heldout)) == (12, 6)
    assert sorted(it.language for it in src.train) == ["en"] * 6 + ["zh"] * 6
    decline = make_call(registry, registry.decline_function.name).to_text()
    assert {it.answer for it in src.train + src.heldout} == {decline}
    assert {it.function for it in src.train} == {registry.decline_function.name}
    assert not {it.instruction for it in src.train} & {it.instruction for it in src.heldout}
    assert src.train[0].image().shape == (32, 32, 3)
