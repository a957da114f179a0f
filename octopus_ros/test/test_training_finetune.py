"""octopus_finetune: real-format parts + a 14th function -> one plain checkpoint the runtime loads.

The end-to-end test runs the console script on a tiny open_clip ViT at 224 px and a tiny Qwen2
directory with its own tokenizer (built here, nothing downloaded), with LoRA and --merge.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from octopus_ros.functions import FunctionRegistry
from octopus_ros.model import Octopus, load_checkpoint, load_tokenizer
from octopus_ros.model.testing import make_real_format_parts, make_tiny_checkpoint
from octopus_ros.paths import config_path
from octopus_ros.training import finetune

OPEN_DOOR = """
  - name: open_door
    token: 13
    description: {en: Open one of the doors of the house., zh: 打开家里的一扇门。}
    args:
      - name: door
        type: enum
        values: [front, back, garage]
        examples:
          en: {front: [front, main], back: [back, rear], garage: garage}
          zh: {front: [前, 大], back: 后, garage: 车库}
    examples:
      en:
        - open the {door} door
        - please open the {door} door
        - can you open the {door} door
        - unlock and open the {door} door
        - I need the {door} door open
        - get the {door} door open for me
      zh:
        - 打开{door}门
        - 请把{door}门打开
        - 帮我开一下{door}门
        - 把{door}门开开
"""
ORDINARY = ["open the front door please", "what is on the table?", "请关上厨房的窗户", "把客厅的灯打开"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """In-process runs pass --threads 1 (2 threads on a busy 2-core machine ran 12x slower)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _registry_file(tmp_path):
    path = tmp_path / "my_functions.yaml"
    path.write_text(
        config_path("functions.yaml").read_text(encoding="utf-8").rstrip("\n") + OPEN_DOOR, "utf-8"
    )
    return path


def _records(tmp_path, sizes=((640, 480), (100, 150), (224, 224), (333, 200), (50, 50))):
    lines = []
    for k, size in enumerate(sizes):
        Image.new("RGB", size, (30 * k, 90, 200)).save(tmp_path / f"frame{k}.png")
        door = ("front", "back", "garage")[k % 3]
        lines.append(
            {
                "image": f"frame{k}.png",
                "instruction": f"open the {door} door now",
                "answer": f"open_door('{door}')",
                "language": "en",
            }
        )
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", "utf-8")
    return path


def _script() -> list[str]:
    exe = shutil.which(
        "octopus_finetune", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    assert exe, "the octopus_finetune console script is not installed (make setup installs it)"
    return [exe]


def test_help_documents_every_flag():
    parser = finetune.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings
    out = subprocess.run(
        [*_script(), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in out, flag
    assert "records:PATH" in out and "--merge" in out


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """octopus_finetune --lora --merge on real-format 224 px parts with a 14th function (run once)."""
    tmp_path = tmp_path_factory.mktemp("finetuned")
    vision_dir, lm_dir = make_real_format_parts(tmp_path / "parts", image_size=224)
    functions = _registry_file(tmp_path)
    records = _records(tmp_path)
    out = tmp_path / "my_model"
    cmd = [
        *_script(),
        "--vision", str(vision_dir), "--lm", str(lm_dir), "--functions", str(functions),
        "--data", "registry", f"records:{records}", "--mix", "3", "1",
        "--lora", "--merge", "--steps", "40", "--batch", "8", "--lr", "3e-3",
        "--eval-n", "24", "--eval-every", "20", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, vision_dir, lm_dir, records


def test_finetune_real_format_parts_end_to_end(finetuned):
    out, vision_dir, lm_dir, records = finetuned
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["image_size"] == 224
    assert metrics["new_functions"]["<nexa_13>"] == "open_door"
    assert metrics["data"][f"records:{records}"] == {"train": 4, "heldout": 1, "weight": 1.0}
    assert metrics["heldout_exact_match"]["after"]["registry"]["n"] > 0
    assert (out / "training_curves.png").stat().st_size > 1000

    # One plain checkpoint: no adapter tensors, loads through the runtime the node uses.
    ckpt = load_checkpoint(out)
    assert not [k for k in ckpt.model.state_dict() if "lora" in k]
    assert ckpt.config.num_functions == 14 and ckpt.config.vision.image_size == 224
    octopus = Octopus.load(out)
    image = np.zeros((480, 640, 3), np.uint8)
    calls = [
        octopus.decide(t, image).call
        for t in ("open the front door", "please open the back door", "打开前门")
    ]
    assert sum(c is not None and c.function == "open_door" for c in calls) >= 2, calls
    assert all(c is None or octopus.grammar().accepts(c.to_text()) for c in calls)

    # Ordinary text keeps the LM's ids; the frozen parts are the downloaded weights, unchanged.
    original = load_tokenizer(lm_dir)
    assert [ckpt.tokenizer.encode(t, add_special_tokens=False) for t in ORDINARY] == [
        original.encode(t, add_special_tokens=False) for t in ORDINARY
    ]
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True)
    rows = ckpt.model.lm.get_input_embeddings().weight[: len(original)]
    assert torch.equal(rows, lm.get_input_embeddings().weight[: len(original)])
    clip = load_file(str(vision_dir / "open_clip_model.safetensors"))
    for name, tensor in ckpt.model.vision.visual.state_dict().items():
        assert torch.equal(tensor, clip[f"visual.{name}"]), name
    # LoRA changed the LM's attention weights (merged in), not only the connector.
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(ckpt.model.lm.state_dict()[q], lm.state_dict()[q])


@pytest.mark.timeout(300)
def test_node_publishes_the_new_function_of_the_finetuned_model_over_dds(finetuned, ros_env, rclpy_context):
    """octopus_node loads the merged checkpoint (model_path, functions from it) and publishes open_door.

    A few dozen steps do not teach a tiny model the function reliably, so the allowlist holds only
    the new function and the threshold is 0: the constrained decoder must emit <nexa_13>, and the
    call must come back over DDS as a typed FunctionCall with the registry's name and token.
    """
    from node_harness import RobotSide, start_node, stop_node

    out = finetuned[0]
    node = start_node(
        ros_env,
        f"model_path:={out}",
        "allowed_functions:=[open_door]",
        "confidence_threshold:=0.0",
        "threads:=1",
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(node)
        robot.send_frame(np.zeros((224, 224, 3), np.uint8))
        outcome = robot.say("open the front door")
        assert outcome.code_name == "OK", (outcome.code_name, outcome.reason)
        assert robot.spin_until(lambda: any(c.request_id == outcome.request_id for c in robot.calls), 10)
        call = next(c for c in robot.calls if c.request_id == outcome.request_id)
        assert (call.function_name, call.function_token) == ("open_door", 13)
        assert call.raw_output.startswith("<nexa_13>(") and call.arguments[0].name == "door"
        assert call.arguments[0].string_value in ("front", "back", "garage")
    finally:
        log = stop_node(node)
    assert f"configured: model {out}" in log


def test_every_source_is_prepared_at_the_towers_size(tmp_path):
    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"), image_size=32)
    registry = FunctionRegistry.from_yaml(_registry_file(tmp_path))
    records = _records(tmp_path)
    args = finetune.build_parser().parse_args(
        [
            "--base",
            str(base),
            "--out",
            str(tmp_path / "o"),
            "--synthetic-n",
            "8",
            "--registry-n",
            "8",
            "--eval-n",
            "4",
        ]
    )
    cfg = finetune._config(args)
    cfg.data = ["synthetic", "registry", f"records:{records}"]
    model, tok, new, _ = finetune.load_model(args, registry, cfg)
    assert new == [13]
    sources = finetune.build_sources(registry, model.config.vision.image_size, cfg)
    tuner = finetune.Finetuner(model, tok, registry, sources, cfg)
    for source in sources:
        pixels = tuner.pixels(source.train[:4])
        assert pixels.shape == (len(source.train[:4]), 3, 32, 32), source.name
    assert sources[0].train[0].image().shape == (32, 32, 3)  # synthetic rendered at the tower's size


def test_rows_outside_the_functional_tokens_never_move(tmp_path):
    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"), image_size=32)
    out = tmp_path / "out"
    argv = [
        "--base",
        str(base),
        "--functions",
        str(_registry_file(tmp_path)),
        "--data",
        "registry",
        "synthetic",
    ]
    argv += ["--synthetic-n", "16", "--registry-n", "64", "--steps", "6", "--batch", "4", "--lr", "1e-2"]
    argv += ["--eval-n", "4", "--no-accuracy", "--init-new", "random", "--threads", "1", "--out", str(out)]
    assert finetune.main(argv) == 0
    before, after = load_checkpoint(base), load_checkpoint(out)
    n = len(before.tokenizer)
    old = before.model.lm.get_input_embeddings().weight
    new = after.model.lm.get_input_embeddings().weight
    functional = set(before.config.nexa_token_ids) | {before.config.nexa_end_id}
    ordinary = [i for i in range(n) if i not in functional]
    assert torch.equal(new[ordinary], old[ordinary])
    assert not torch.equal(new[sorted(functional)], old[sorted(functional)])
    assert not torch.equal(
        after.model.connector.state_dict()["fc1.weight"],
        before.model.connector.state_dict()["fc1.weight"],
    )
    for name, tensor in before.model.vision.state_dict().items():
        assert torch.equal(after.model.vision.state_dict()[name], tensor), name  # BatchNorm stats included


def test_bad_input_is_a_clear_error(tmp_path, caplog):
    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "instruction": "hi", "answer": "fly()", "language": "en"}\n', "utf-8")
    rc = finetune.main(["--base", str(base), "--data", f"records:{bad}", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert f"{bad}:1: image file not found" in caplog.text and "unknown function" in caplog.text
    with pytest.raises(SystemExit):
        finetune.main(["--base", str(base), "--lm", "x", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        finetune.main(["--base", str(base), "--merge", "--out", str(tmp_path / "o")])
    assert finetune.main(["--base", str(base), "--data", "nonsense", "--out", str(tmp_path / "o")]) == 2
    assert "unknown source 'nonsense'" in caplog.text


def _tiny_argv(tmp_path, out, *extra):
    base = tmp_path / "base"
    if not base.exists():
        make_tiny_checkpoint(base, config_path("functions.yaml"), image_size=32)
    argv = ["--base", str(base), "--functions", str(_registry_file(tmp_path)), "--data", "registry"]
    argv += ["--registry-n", "32", "--batch", "4", "--eval-n", "4", "--eval-every", "0", "--threads", "1"]
    argv += ["--out", str(out)]
    return [*argv, *extra]


def test_lora_without_merge_keeps_the_adapters_apart(tmp_path):
    out = tmp_path / "unmerged"
    assert finetune.main(_tiny_argv(tmp_path, out, "--lora", "--steps", "3", "--lr", "1e-2")) == 0
    assert (out / "lora_adapter" / "adapter_config.json").is_file()
    ckpt = load_checkpoint(out)
    assert not [k for k in ckpt.model.state_dict() if "lora" in k]
    base = load_checkpoint(tmp_path / "base")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(ckpt.model.lm.state_dict()[q], base.model.lm.state_dict()[q])  # adapters not folded in
    after = json.loads((out / "metrics.json").read_text())["heldout_exact_match"]["after"]
    assert set(after) == {"with_adapters", "checkpoint_without_adapters"}


def test_full_lm_trains_every_row_and_the_wall_clock_budget_stops_a_run(tmp_path):
    out = tmp_path / "full"
    argv = _tiny_argv(
        tmp_path, out, "--full-lm", "--steps", "100000", "--seconds", "2", "--lr", "1e-2", "--no-accuracy"
    )
    assert finetune.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_by"] == "seconds" and 0 < metrics["steps"] < 100000
    before, after = load_checkpoint(tmp_path / "base"), load_checkpoint(out)
    old = before.model.lm.get_input_embeddings().weight
    new = after.model.lm.get_input_embeddings().weight[: old.shape[0]]
    changed = (new != old).any(dim=1)
    assert changed.sum() > len(before.config.nexa_token_ids) + 1  # ordinary rows moved too


def test_the_learning_rate_schedule_follows_the_steps_not_the_clock(tmp_path, monkeypatch):
    """A slow machine trains the same model: the wall clock only stops a run (--seconds), it
    never shortens the schedule. Here the clock runs 150 s per step: at each step it is further
    along its 1000 s guard than the steps are along theirs, yet never reaches it."""
    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"), image_size=32)
    argv = ["--base", str(base), "--functions", str(_registry_file(tmp_path)), "--data", "registry"]
    argv += ["--registry-n", "32", "--steps", "5", "--batch", "4", "--lr", "1e-2", "--seconds", "1000"]
    argv += ["--eval-n", "4", "--eval-every", "0", "--no-accuracy", "--threads", "1", "--seed", "3"]
    assert finetune.main([*argv, "--out", str(tmp_path / "a")]) == 0
    ticks = itertools.count(0.0, 150.0)
    monkeypatch.setattr(finetune.time, "monotonic", lambda: next(ticks))
    assert finetune.main([*argv, "--out", str(tmp_path / "b")]) == 0
    a, b = load_checkpoint(tmp_path / "a").model, load_checkpoint(tmp_path / "b").model
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["stopped_by"] == "steps"
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_distill_keeps_the_starting_models_distribution_on_old_answers(tmp_path):
    """--distill: zero KL while the model is its starting copy, positive once it moved; answers that
    call the new function are never distilled, and the new token gets no teacher mass."""
    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"), image_size=32)
    registry = FunctionRegistry.from_yaml(_registry_file(tmp_path))
    argv = ["--base", str(base), "--out", str(tmp_path / "o"), "--data", "registry", "synthetic"]
    args = finetune.build_parser().parse_args([*argv, "--synthetic-n", "8", "--registry-n", "16"])
    cfg = finetune._config(args)
    model, tok, new, _ = finetune.load_model(args, registry, cfg)
    sources = finetune.build_sources(registry, model.config.vision.image_size, cfg)
    tuner = finetune.Finetuner(model, tok, registry, sources, cfg)
    import copy

    model.eval()
    by_source = {s.name: s.train for s in sources}
    old = by_source["synthetic"][:4]
    new_items = [it for it in by_source["registry"] if "<nexa_13>" in it.answer][:3]
    assert len(new_items) == 3
    batch = tuner.batch(old)
    with torch.no_grad():
        logits = model(**batch).logits
        tuner.set_teacher(copy.deepcopy(model), [])
        assert abs(float(tuner.distill_loss(old, batch, logits))) < 1e-5  # the same model: no divergence
        tuner.set_teacher(copy.deepcopy(model), new)
        # the teacher has no mass on the new token: KL(teacher || model) = -log(1 - model's mass on it)
        at = batch["labels"][:, 1:] != -100
        q = torch.softmax(logits[:, :-1][at], -1)[:, tok.convert_tokens_to_ids("<nexa_13>")]
        same = tuner.distill_loss(old, batch, logits)
        assert float(same) == pytest.approx(float(-torch.log1p(-q).mean()), rel=1e-3)
    assert (
        tuner.distill_loss(new_items, tuner.batch(new_items), model(**tuner.batch(new_items)).logits) is None
    )
    with torch.no_grad():
        head = model.lm.get_output_embeddings().weight
        head.add_(0.5 * torch.randn_like(head))
        moved = tuner.distill_loss(old, batch, model(**batch).logits)
    assert float(moved) > float(same) + 1e-3
    # the gradient reaches the model, not the frozen copy
    model.train()
    out = model(**batch)
    tuner.distill_loss(old, batch, out.logits).backward()
    assert model.lm.get_output_embeddings().weight.grad is not None
    assert all(p.grad is None for p in tuner.teacher.parameters())


def test_distill_runs_end_to_end_and_is_recorded(tmp_path):
    out = tmp_path / "distilled"
    argv = _tiny_argv(
        tmp_path, out, "--lora", "--steps", "3", "--lr", "1e-2", "--no-accuracy", "--distill", "1"
    )
    argv += ["--data", "registry", "synthetic", "--synthetic-n", "8"]  # the last --data counts
    assert finetune.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finetune"]["distill"] == 1.0
    assert metrics["final_distill_kl_ema"] >= 0.0
    with pytest.raises(SystemExit):
        finetune.main(_tiny_argv(tmp_path, tmp_path / "x", "--distill", "-1"))


def test_extend_vocab_gives_byte_split_letters_of_the_new_function_tokens_of_their_own(tmp_path):
    """--extend-vocab: 开 and 门 of open_door's phrasings become one token each (the tiny checkpoint's
    byte-level BPE splits them), their rows start at the mean of their pieces and train; text
    without them keeps its ids; a pretrained --lm is refused."""
    base = make_tiny_checkpoint(tmp_path / "base", config_path("functions.yaml"), image_size=32)
    registry = FunctionRegistry.from_yaml(_registry_file(tmp_path))
    argv = ["--base", str(base), "--out", str(tmp_path / "o"), "--data", "registry"]
    plain = finetune.build_parser().parse_args(argv)
    model0, tok0, _, none = finetune.load_model(plain, registry, finetune._config(plain))
    assert none == []
    split = [c for c in "开门" if len(tok0.encode(c, add_special_tokens=False)) > 1]
    assert split, "the tiny tokenizer was expected to split these into byte pieces"
    pieces = {c: tok0.encode(c, add_special_tokens=False) for c in split}
    args = finetune.build_parser().parse_args([*argv, "--extend-vocab"])
    cfg = finetune._config(args)
    model, tok, new, added = finetune.load_model(args, registry, cfg)
    assert new == [13] and len(added) >= len(split)
    emb = model.lm.get_input_embeddings().weight
    for c in split:
        (tid,) = tok.encode(c, add_special_tokens=False)
        assert tid in added
        assert torch.allclose(emb[tid], emb[pieces[c]].mean(0))
    for text in ("open the front door please", "what is on the table?"):
        assert tok.encode(text, add_special_tokens=False) == tok0.encode(text, add_special_tokens=False)
    rows = finetune.trainable_rows(model, tok, [13], added)
    assert set(added) <= set(rows) and model.config.nexa_token_ids[13] in rows
    with pytest.raises(SystemExit):
        finetune.main(["--vision", "x", "--lm", "y", "--out", str(tmp_path / "p"), "--extend-vocab"])


def test_contrast_replays_the_requests_that_say_a_new_functions_values(tmp_path, caplog):
    registry = FunctionRegistry.from_yaml(_registry_file(tmp_path))

    def item(text, lang, fn, source="synthetic"):
        return finetune.Item(lambda: np.zeros((8, 8, 3), np.uint8), text, "", source, lang, fn)

    synthetic = finetune.Source(
        "synthetic",
        [
            item("go to the back yard", "en", "navigate_to"),  # "back": a door of open_door
            item("put it on the backpack", "en", "place"),  # not the word "back"
            item("把杯子放到后面", "zh", "place"),  # 后
            item("去车库", "zh", "navigate_to"),  # 车库
            item("去厨房", "zh", "navigate_to"),
        ],
        [],
    )
    registry_src = finetune.Source(
        "registry", [item("open the back door", "en", "open_door", "registry")], []
    )
    decline = finetune.Source(
        "decline", [item("the main thing is to rest", "en", "no_action", "decline")], []
    )
    contrast = finetune.contrast_source(registry, ["open_door"], [synthetic, registry_src, decline], 2.0)
    assert contrast.weight == 2.0 and contrast.heldout == []
    assert [it.instruction for it in contrast.train] == [
        "go to the back yard",
        "把杯子放到后面",
        "去车库",
        "the main thing is to rest",
    ]
    assert finetune.contrast_source(registry, ["open_door"], [registry_src], 1.0) is None
    assert "no replay request says a value of open_door" in caplog.text


def test_value_rows_are_the_first_tokens_of_values_no_existing_function_answers_with(tmp_path):
    from octopus_ros.paths import default_model_dir

    tok = load_tokenizer(default_model_dir())
    base = config_path("functions.yaml").read_text(encoding="utf-8").rstrip("\n")
    light = """
  - name: set_light
    token: 13
    description: {en: Switch a light.}
    args:
      - {name: room, type: enum, values: [kitchen, garage]}
      - {name: "on", type: bool}
"""
    path = tmp_path / "light.yaml"
    path.write_text(base + light, "utf-8")
    registry = FunctionRegistry.from_yaml(path)
    first = {w: tok(w, add_special_tokens=False)["input_ids"][0] for w in ("True", "False")}
    # the quote that begins every enum value is an existing function's too
    assert finetune.value_rows(registry, tok, [13]) == sorted(first.values())
    fan = light.replace("set_light", "set_fan").replace("token: 13", "token: 14")
    path.write_text(base + light + fan, "utf-8")
    registry = FunctionRegistry.from_yaml(path)
    assert finetune.value_rows(registry, tok, [14]) == []  # set_light already answers True/False
    assert finetune.value_rows(FunctionRegistry.from_yaml(_registry_file(tmp_path)), tok, [13]) == []


def test_a_counterfactual_trains_in_the_same_batch_as_its_twins():
    import random
    from types import SimpleNamespace

    def item(text, answer, twins=()):
        return finetune.Item(
            lambda: np.zeros((8, 8, 3), np.uint8), text, answer, "registry", "en", "f", twins=twins
        )

    paired = item("turn on the hall light", "on", twins=(("turn off the hall light", "off"),))
    plain = finetune.Source("synthetic", [item("go to the hall", "go")], [], 1.0)
    tuner = SimpleNamespace(
        rng=random.Random(0),
        sources=[finetune.Source("registry", [paired], [], 1.0), plain],
        cfg=finetune.FinetuneConfig(batch=7),
        vary=lambda it: it,
    )
    for _ in range(20):
        batch = finetune.Finetuner.sample(tuner)
        assert len(batch) == 7
        texts = [it.instruction for it in batch]
        for k, text in enumerate(texts):
            if text == "turn on the hall light" and k + 1 < len(texts):
                assert texts[k + 1] == "turn off the hall light" and batch[k + 1].answer == "off"
        assert texts.count("turn off the hall light") >= texts.count("turn on the hall light") - 1
        assert all(not it.twins for it in batch if it.instruction == "turn off the hall light")
