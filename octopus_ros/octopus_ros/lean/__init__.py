"""The lean robot runtime: the whole Octopus model on onnxruntime, with no torch.

Two kinds of module live here, all importable without torch, transformers or open_clip:

* the model's torch-free policy, shared with the torch runtime (``octopus_ros.model`` imports it):
  constrained decoding (:mod:`.decoding`), prompt building (:mod:`.prompt`), novelty scores
  (:mod:`.novelty`), the grounding head's phrase rules (:mod:`.grounding`) and how a decision is
  parsed and finished (:mod:`.decision`);
* the onnxruntime side: the tokenizer from ``tokenizer.json`` (:mod:`.tokenizer`), the export
  manifest (:mod:`.manifest`), image preprocessing in numpy (:mod:`.preprocess`) and
  :class:`~octopus_ros.lean.runtime.LeanOctopus`, which offers what the node's engine uses of
  :class:`octopus_ros.model.Octopus`.

The export that writes the ONNX files needs torch and lives in the model room
(``python -m octopus_ros.model.onnx_export_all CKPT``). Nothing here is imported eagerly:
``from octopus_ros.lean.runtime import LeanOctopus``.
"""
