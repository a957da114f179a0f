"""The lean runtime (octopus_ros/lean/, issue 14 item 3): the bundled model exported with
``onnx_export_all`` decides on onnxruntime exactly as the torch Octopus does, refuses stale,
damaged and missing exports by name, and runs with no torch in the process."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from octopus_ros.lean.errors import CheckpointError
from octopus_ros.lean.prompt import model_utterance
from octopus_ros.paths import default_model_dir

pytestmark = pytest.mark.slow


def checkpoint_copy(dst: Path) -> Path:
    """The bundled checkpoint as links (config.json copied, so a test may edit it)."""
    src = default_model_dir()
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (shutil.copy if f.name == "config.json" else os.symlink)(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from octopus_ros.model.onnx_export_all import export_all

    ckpt = checkpoint_copy(tmp_path_factory.mktemp("lean") / "ckpt")
    export_all(ckpt)  # -> ckpt/onnx
    return ckpt


@pytest.fixture(scope="module")
def pair(exported):
    from octopus_ros.lean.runtime import LeanOctopus
    from octopus_ros.model.runtime import Octopus

    return Octopus.load(exported), LeanOctopus.load(exported)


def cases():
    """Natural-set items (both languages, declines, colourless and absent objects) and held-out
    generated examples, as (utterance, RGB frame)."""
    from octopus_ros.data import generate
    from octopus_ros.data.natural import load_natural_set

    items = load_natural_set()
    out = [(it.text, it.frame()) for it in items[::12]]
    out += [(ex.instruction, ex.image) for split in ("iid", "unseen_combo") for ex in generate(split, 4, 99)]
    return out


def same_decision(a, b) -> None:
    assert (a.raw_text, a.call, a.colour_resolved_from) == (b.raw_text, b.call, b.colour_resolved_from)
    assert (a.error is None) == (b.error is None) and getattr(a.error, "kind", None) == getattr(
        b.error, "kind", None
    )
    assert b.confidence == pytest.approx(a.confidence, rel=1e-3, abs=1e-6)
    for x, y in ((a.text_novelty, b.text_novelty), (a.image_novelty, b.image_novelty)):
        assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(x, rel=1e-3)
    # request novelty: a rank among the profile's reference margins, so float noise may move it by one
    x, y = a.request_novelty, b.request_novelty
    assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(x, abs=2e-3)
    assert (a.grounding is None) == (b.grounding is None)
    if a.grounding is not None:
        assert (a.grounding.resolved, a.grounding.grounded, a.grounding.other_colour) == (
            b.grounding.resolved,
            b.grounding.grounded,
            b.grounding.other_colour,
        )
        assert b.grounding.score == pytest.approx(a.grounding.score, abs=1e-4)


def test_decisions_identical_to_torch(pair):
    torch_model, lean = pair
    seen_grounding = seen_request = 0
    for text, rgb in cases():
        a = torch_model.decide(text, torch_model.encode(rgb))
        b = lean.decide(text, lean.encode(rgb))
        same_decision(a, b)
        seen_grounding += a.grounding is not None
        seen_request += not math.isnan(a.request_novelty)
        # a raw frame (no pre-encoding, no cached image prefill) decides the same
        same_decision(a, lean.decide(text, rgb))
    assert seen_grounding >= 3  # the grounding head's path was compared, not skipped
    assert seen_request >= 10  # so was the request profile's


def test_allowlist_and_context_identical_to_torch(pair):
    torch_model, lean = pair
    rgb = np.full((64, 64, 3), 128, np.uint8)
    context = [("halt now", "stop()")]
    for text in ("pick up the red cup", "停下", "text Bob that lunch is ready"):
        for kw in ({"allowlist": ("stop", "send_message")}, {"context": context}):
            same_decision(torch_model.decide(text, rgb, **kw), lean.decide(text, rgb, **kw))


def test_numpy_preprocessing_matches_torch(pair):
    torch_model, lean = pair
    rng = np.random.default_rng(0)
    for shape in ((64, 64, 3), (480, 640, 3), (1080, 1920, 3), (37, 50, 3), (30, 20, 3)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        want = torch_model.preprocess(img).numpy()
        np.testing.assert_allclose(lean.preprocessor(img), want, atol=5e-5)
    with pytest.raises(ValueError, match="uint8"):
        lean.encode(np.zeros((8, 8, 3), np.float64))


def test_stale_export_is_refused(exported, tmp_path):
    from octopus_ros.lean.runtime import LeanOctopus

    ckpt = checkpoint_copy(tmp_path / "ckpt")
    os.symlink(exported / "onnx", ckpt / "onnx")
    config = json.loads((ckpt / "config.json").read_text())
    config["weights"]["sha256"] = "0" * 64  # as if the checkpoint had been retrained since
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="stale ONNX export") as e:
        LeanOctopus.load(ckpt)
    assert "onnx_export_all" in str(e.value) and "manifest.json" in str(e.value)


def test_missing_export_names_the_file_and_the_command(tmp_path):
    from octopus_ros.lean.runtime import LeanOctopus

    ckpt = checkpoint_copy(tmp_path / "ckpt")
    with pytest.raises(
        CheckpointError, match=r"manifest\.json.*python -m octopus_ros\.model\.onnx_export_all"
    ):
        LeanOctopus.load(ckpt)
    with pytest.raises(CheckpointError, match="has no 'int8' graphs"):
        os.symlink(default_model_dir(), tmp_path / "unused")  # keep tmp_path non-empty
        LeanOctopus.load(ckpt, export_dir=_export_of(ckpt, tmp_path), precision="int8")


def _export_of(ckpt: Path, tmp: Path) -> Path:
    """A minimal valid manifest of another export, fp32 only (no graphs read before the check)."""
    out = tmp / "fp32_only"
    out.mkdir()
    sha = json.loads((ckpt / "config.json").read_text())["weights"]["sha256"]
    manifest = {
        "format": "octopus_ros.onnx_export",
        "format_version": 1,
        "weights_sha256": sha,
        "files": {},
        "variants": {"fp32": {}},
        "embeddings": {},
        "lm": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_damaged_and_corrupt_graphs_are_refused_by_name(exported, tmp_path):
    from octopus_ros.lean import manifest as M
    from octopus_ros.lean.runtime import LeanOctopus

    onnx = tmp_path / "onnx"
    shutil.copytree(exported / "onnx", onnx)
    lm = onnx / "lm.onnx"
    data = bytearray(lm.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other sha256
    lm.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"lm\.onnx: damaged"):
        LeanOctopus.load(exported, export_dir=onnx)
    # a file that is not a graph at all, recorded as such in the manifest: onnxruntime's refusal
    lm.write_bytes(b"not an onnx graph")
    manifest = json.loads((onnx / M.MANIFEST_FILE).read_text())
    manifest["files"]["lm.onnx"] = {"sha256": M.sha256_file(lm), "bytes": lm.stat().st_size}
    (onnx / M.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"lm\.onnx: onnxruntime cannot load this graph"):
        LeanOctopus.load(exported, export_dir=onnx)


def test_engine_with_the_lean_runtime_never_imports_torch(exported):
    """The node's own imports, the engine and the lean runtime, in a fresh process: one request
    decided, and no torch, transformers or open_clip loaded."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        import octopus_ros.ros.octopus_node  # everything the node process imports
        from octopus_ros.functions import validate_call
        from octopus_ros.lean.runtime import LeanOctopus
        from octopus_ros.runtime.engine import ActionEngine, EngineConfig
        from octopus_ros.runtime.outcomes import Frame, Request, Source
        import functools, time
        import numpy as np

        model = LeanOctopus.load({str(exported)!r})
        done = threading.Event()
        results = []
        engine = ActionEngine(model=model, registry=model.registry, config=EngineConfig(confidence_threshold=0.0),
                              validate=functools.partial(validate_call, registry=model.registry),
                              on_result=lambda r: (results.append(r), done.set()))
        engine.start()
        rgb = np.full((64, 64, 3), 128, np.uint8)
        now = time.time()
        engine.on_frame(Frame(seq=1, stamp=now, received=now, frame_id="cam", decode=lambda: rgb))
        engine.submit(Request(id="r1", text="stop", source=Source.UTTERANCE, arrived=now))
        assert done.wait(60), "no result"
        engine.stop()
        print("RESULT", results[0].code.name, results[0].raw_text)
        print("HEAVY", [m for m in ("torch", "transformers", "open_clip", "torchvision") if m in sys.modules])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESULT OK <nexa_" in out.stdout, out.stdout
    assert "HEAVY []" in out.stdout, out.stdout


def test_graph_weights_in_a_side_file_are_checked(exported, tmp_path):
    """Every graph keeps its weights in ``NAME.onnx.data`` (onnxruntime maps it; the only way past
    protobuf's 2 GiB for a 0.5B-shaped LM): the manifest lists each side file with its sha256, and
    a damaged side file is refused by name."""
    from octopus_ros.lean.runtime import LeanOctopus

    manifest = json.loads((exported / "onnx" / "manifest.json").read_text())
    graphs = set(manifest["variants"]["fp32"].values())
    assert {g: manifest["external_data"][g] for g in graphs} == {g: [g + ".data"] for g in graphs}
    side = exported / "onnx" / "lm.onnx.data"
    assert manifest["files"]["lm.onnx.data"]["bytes"] == side.stat().st_size
    assert side.stat().st_size > 10 * (exported / "onnx" / "lm.onnx").stat().st_size  # the weights are there
    onnx = tmp_path / "onnx"
    shutil.copytree(exported / "onnx", onnx)
    data = bytearray((onnx / "lm.onnx.data").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (onnx / "lm.onnx.data").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"lm\.onnx\.data: damaged"):
        LeanOctopus.load(exported, export_dir=onnx)


def test_int4_lm_variant(tmp_path, pair):
    """``--int4``: the LM's MatMuls become onnxruntime's 4-bit MatMulNBits (the image side stays
    int8); the lean runtime loads it as precision int4 and decides, on the bundled 9M model, nearly
    as torch fp32 does (96 % of the natural set identical when measured; 4-bit weights are a real
    change, not a bit-exact one)."""
    import onnx

    from octopus_ros.lean.runtime import LeanOctopus
    from octopus_ros.model.onnx_export_all import export_all

    ckpt = checkpoint_copy(tmp_path / "ckpt")
    export_all(ckpt, int4=True)
    manifest = json.loads((ckpt / "onnx" / "manifest.json").read_text())
    variants = manifest["variants"]
    assert variants["int4"] == {**variants["int8"], "lm": "lm.int4.onnx"}
    assert manifest["int4_block"] == 32
    assert manifest["external_data"]["lm.int4.onnx"] == ["lm.int4.onnx.data"]
    graph = onnx.load(str(ckpt / "onnx" / "lm.int4.onnx"), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    assert any(n.op_type == "MatMulNBits" for n in graph.node)
    # every MatMul left multiplies activations (attention), none a weight: all weights are 4-bit
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and weights & set(n.input)]
    sizes = {n: manifest["files"][n]["bytes"] for n in ("lm.int8.onnx.data", "lm.int4.onnx.data")}
    assert sizes["lm.int4.onnx.data"] < 0.75 * sizes["lm.int8.onnx.data"]
    torch_model, _ = pair
    lean = LeanOctopus.load(ckpt, precision="int4")
    rows = cases()
    same = sum(torch_model.decide(t, rgb).raw_text == lean.decide(t, rgb).raw_text for t, rgb in rows)
    assert same >= 0.95 * len(rows), (same, len(rows))  # 61 of these 62 when written


def test_an_ending_full_stop_or_exclamation_is_not_read(pair):
    """A request read with an ending ("Pick up the red cup.") decides as without it, in both runtimes: prompt,
    copier and grammar read lean/prompt.py's model_utterance, so a copied message does not take
    the request's full stop either."""
    torch_model, lean = pair
    rgb = np.full((64, 64, 3), 128, np.uint8)
    for model in (torch_model, lean):
        enc = model.encode(rgb)
        for text in ("pick up the red cup", "text bob that the meeting is cancelled", "把碗放到桌子上"):
            plain = model.decide(text, enc)
            for ending in (".", "!", "。", "！", "...", " . "):
                same_decision(plain, model.decide(text + ending, enc))
        d = model.decide("text bob that the meeting is cancelled.", enc, allowlist=["send_message"])
        assert d.ok and d.call.args[1].value == "the meeting is cancelled", d.raw_text
        # a question mark is part of what the model reads
        assert model.prompt.encode_prompt("are you ok?") != model.prompt.encode_prompt("are you ok")


def test_a_copied_message_goes_out_as_written(pair):
    """Both runtimes read Traditional Chinese as Simplified and capitals in lower case, and copy the
    message from that text; the call carries it in the characters the user wrote
    (lean/decision.copied_as_written), and the publish check still finds it a copy."""
    from octopus_ros.runtime.outcomes import invented_args

    torch_model, lean = pair
    rgb = np.full((64, 64, 3), 128, np.uint8)
    cases = [
        ("跟媽媽說會議取消了", "會議取消了"),
        ("跟 Bob 說 晚飯 好了", "晚飯 好了"),
        ("TEXT BOB THAT THE MEETING IS CANCELLED.", "THE MEETING IS CANCELLED"),
    ]
    for model in (torch_model, lean):
        enc = model.encode(rgb)
        for text, body in cases:
            d = model.decide(text, enc, allowlist=["send_message"])
            assert d.ok and d.call.args[1].value == body, (text, d.raw_text, d.call)
            assert not invented_args(model.registry.by_name("send_message"), d.call, text)
            # what the model wrote is the Simplified / lower-case copy
            assert model_utterance(body) in d.raw_text
    assert torch_model.decide(cases[0][0], rgb).call == lean.decide(cases[0][0], rgb).call


def test_the_export_command_exports_a_checkpoints_second_opinion_too(tmp_path):
    """``onnx_export_all MODEL`` (no --out) also writes MODEL/second_opinion/onnx, so the node's
    backend onnx finds both models' graphs; both load in the lean runtime."""
    from octopus_ros.lean.runtime import LeanOctopus
    from octopus_ros.model.onnx_export_all import main
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path

    ckpt = make_tiny_checkpoint(tmp_path / "m", functions=config_path("functions.yaml"), image_size=32)
    make_tiny_checkpoint(
        ckpt / "second_opinion", functions=config_path("functions.yaml"), image_size=32, seed=1
    )
    assert main([str(ckpt)]) == 0
    for path in (ckpt, ckpt / "second_opinion"):
        assert (path / "onnx" / "manifest.json").is_file()
        LeanOctopus.load(path)
