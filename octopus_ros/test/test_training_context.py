"""octopus_finetune puts in-context examples in training prompts: a record's own context, and
with --context-k K examples of the same function from the same source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from octopus_ros.functions import FunctionRegistry
from octopus_ros.model import PromptFormat
from octopus_ros.model.testing import tiny_model, tiny_tokenizer
from octopus_ros.paths import config_path
from octopus_ros.training import finetune
from octopus_ros.training.finetune import FinetuneConfig, Finetuner, Item, Source

BLANK = np.zeros((32, 32, 3), np.uint8)


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    return tok, tiny_model(tok), FunctionRegistry.from_yaml(config_path("functions.yaml"))


def _item(instruction: str, answer: str, function: str, context=()) -> Item:
    return Item(lambda: BLANK, instruction, answer, "registry", "en", function, tuple(context))


ITEMS = [
    _item("pick up the red cup", "<nexa_0>('red cup')<nexa_end>", "pick_up"),
    _item("grab the blue ball", "<nexa_0>('blue ball')<nexa_end>", "pick_up"),
    _item("take the green book", "<nexa_0>('green book')<nexa_end>", "pick_up"),
    _item("stop now", "<nexa_3>()<nexa_end>", "stop"),
    _item("halt", "<nexa_3>()<nexa_end>", "stop"),
]


def _prompts(tuner: Finetuner, batch) -> list[str]:
    tok = tuner.tok
    rows = []
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        n = next(i for i, v in enumerate(labels) if v != -100)
        rows.append(tok.decode(ids[:n], skip_special_tokens=False))
    return rows


def test_context_k_gives_examples_of_the_same_function(parts):
    tok, model, registry = parts
    src = Source("registry", list(ITEMS), [])
    tuner = Finetuner(model, tok, registry, [src], FinetuneConfig(context_k=2, context_share=1.0, seed=1))
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    seen = set()
    for _ in range(5):
        batch = tuner.batch(ITEMS, sample_context=True)
        for it, prompt in zip(ITEMS, _prompts(tuner, batch), strict=True):
            head = prompt.split("<image>")[0]
            turns = head.count("\nUser: ")
            assert turns == (2 if it.function == "pick_up" else 1)  # stop has one other example
            others = [x for x in ITEMS if x.function == it.function and x is not it]
            assert sum(f"User: {x.instruction}\nGPT:{x.answer}" in head for x in others) == turns
            assert f"User: {it.instruction}\nGPT:" not in head  # never its own answer
            seen.add(head)
            shown = sorted(
                (x for x in others if x.instruction in head), key=lambda x: head.index(x.instruction)
            )
            assert prompt == fmt.build_prompt(it.instruction, [(x.instruction, x.answer) for x in shown])
    assert len(seen) > len(ITEMS)  # the examples are drawn afresh
    # evaluation batches (held-out loss) carry no drawn examples
    plain = _prompts(tuner, tuner.batch(ITEMS))
    assert all("\nUser: " not in p.split("<image>")[0] for p in plain)


def test_without_context_k_prompts_and_sampling_are_unchanged(parts):
    tok, model, registry = parts
    a = Finetuner(model, tok, registry, [Source("registry", list(ITEMS), [])], FinetuneConfig(seed=3))
    b = Finetuner(model, tok, registry, [Source("registry", list(ITEMS), [])], FinetuneConfig(seed=3))
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    got = a.batch(ITEMS, sample_context=True)["input_ids"]
    want = b.batch(ITEMS)["input_ids"]
    assert torch.equal(got, want)
    assert _prompts(a, a.batch(ITEMS))[0] == fmt.build_prompt(ITEMS[0].instruction)
    assert [x.instruction for x in a.sample()] == [x.instruction for x in b.sample()]


def test_records_context_goes_in_the_prompt(parts, tmp_path):
    tok, model, registry = parts
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "f.png")
    rows = [
        {
            "image": "f.png",
            "instruction": f"go to the kitchen {k}",
            "answer": "navigate_to('kitchen')",
            "language": "en",
            "context": [
                {
                    "image": "f.png",
                    "instruction": "head to the office",
                    "answer": "navigate_to(place='office')",
                }
            ]
            if k % 2
            else [],
        }
        for k in range(4)
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", "utf-8")
    src = finetune.records_source(str(path), registry, FinetuneConfig(heldout=0.0))
    assert [it.context for it in src.train] == [
        (),
        (("head to the office", "<nexa_2>('office')<nexa_end>"),),
        (),
        (("head to the office", "<nexa_2>('office')<nexa_end>"),),
    ]
    tuner = Finetuner(model, tok, registry, [src], FinetuneConfig(context_k=3, context_share=1.0))
    for sample in (False, True):  # a record's own context, in training and in evaluation
        prompt = _prompts(tuner, tuner.batch(src.train[1:2], sample_context=sample))[0]
        assert prompt.split("<image>")[0].endswith(
            "\nUser: head to the office\nGPT:<nexa_2>('office')<nexa_end>"
        )


def test_incontext_measurement_examples_are_fixed_text_examples(parts):
    from octopus_ros.functions import parse_plain
    from octopus_ros.training.incontext import example_pool, format_table

    _, _, registry = parts
    pool = example_pool(registry, n=400)
    assert pool == example_pool(registry, n=400)  # fixed
    functions = [parse_plain(answer, registry).function for _, answer in pool]
    assert len(set(functions)) == len(functions) >= 8  # one per function
    langs = ["zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en" for text, _ in pool]
    assert langs[:4] == ["en", "zh", "en", "zh"]
    row = {
        "examples": [{"instruction": i, "call": a} for i, a in pool[:2]],
        "exact_match": {"iid": 0.9, "unseen_phrasing": 0.8, "unseen_combo": 0.7},
        "published_wrong": {"iid": 0.01, "unseen_phrasing": 0.02, "unseen_combo": 0.03},
        "natural": {
            "published_wrong": 0.3,
            "published_right": 0.5,
            "declines_right": 0.6,
            "calls_published_right": 0.7,
        },
    }
    table = format_table({"checkpoint": "m", "n_per_split": 10, "k": {"0": row, "2": row}})
    assert "k=0" in table and "k=2" in table and "natural: PUBLISHED WRONG" in table and " 30.0%" in table


def test_no_said_bool_loss_leaves_out_only_a_value_the_request_says(parts, tmp_path):
    """--no-said-bool-loss: a `narrow` bool's value carries no loss where the request says it
    (the grammar offers only that value), and keeps it where the request says neither or only
    the value not wanted."""
    import yaml

    from octopus_ros.training.add_function_demo import compose_registry

    tok13, _, _ = parts
    registry, _ = compose_registry(
        config_path("functions.yaml"), config_path("examples/set_light.yaml"), tmp_path / "functions.yaml"
    )
    assert yaml.safe_load((tmp_path / "functions.yaml").read_text())["functions"][-1]["name"] == "set_light"
    tok = tiny_tokenizer(num_functions=14)
    model = tiny_model(tok, num_functions=14)
    on, off = "<nexa_13>('kitchen', True)<nexa_end>", "<nexa_13>('kitchen', False)<nexa_end>"
    items = [
        _item("turn on the kitchen light", on, "set_light"),  # says on: forced
        _item("switch off the kitchen light", off, "set_light"),  # says off: forced
        # "too dark" is one of the entry's said words for on, and a request that says neither is offered
        # the entry's unsaid value (on): forced since stop 47
        _item("it is too dark in the kitchen", on, "set_light"),
        _item("把厨房的灯打开", on, "set_light"),  # says on (打开): forced
        _item("pick up the red cup", "<nexa_0>('red cup')<nexa_end>", "pick_up"),  # no bool
    ]
    kept = Finetuner(model, tok, registry, [Source("registry", items, [])], FinetuneConfig())
    left = Finetuner(
        model, tok, registry, [Source("registry", items, [])], FinetuneConfig(said_bool_loss=False)
    )
    full, masked = kept.batch(items)["labels"], left.batch(items)["labels"]
    assert torch.equal(kept.batch(items)["input_ids"], left.batch(items)["input_ids"])
    dropped = [(full[i] != -100).sum().item() - (masked[i] != -100).sum().item() for i in range(len(items))]
    assert dropped[0] > 0 and dropped[1] > 0 and dropped[2] > 0 and dropped[3] > 0
    assert dropped[4] == 0
    # what is left out is the value, and only the value: the answer's text without it
    for i in (0, 1, 3):
        gone = [
            t for t, m in zip(full[i].tolist(), masked[i].tolist(), strict=True) if t != -100 and m == -100
        ]
        assert tok.decode(gone).strip() in ("True", "False")
