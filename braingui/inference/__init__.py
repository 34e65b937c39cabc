"""Inference: model bundles, networks, the predictor, Grad-CAM and the pipeline (torch + MONAI, no Qt).

Modules (import them directly; this package imports nothing, so the torch-free ones stay torch-free):

* :mod:`~braingui.inference.manifest` — the bundle manifest schema and :class:`BundleError` (no torch);
* :mod:`~braingui.inference.locate` — where bundles are found: ``--models``, ``BRAINGUI_MODELS``, the
  user data folder, the bundled models (no torch);
* :mod:`~braingui.inference.bundle` — checked weight loading (``weights_only``, sha256, keys, shapes)
  and :func:`write_bundle`;
* :mod:`~braingui.inference.networks` — the MONAI networks a manifest can name;
* :mod:`~braingui.inference.predictor` — device choice, loaded models, sliding windows;
* :mod:`~braingui.inference.openvino_backend` — the segmentation forward on OpenVINO (CPU), converted once
  per weights and cached, with torch as the fallback;
* :mod:`~braingui.inference.limits` — bounds on input sizes and sliding windows a manifest may ask for;
* :mod:`~braingui.inference.tta` — test-time augmentation: the mean over mirror-flipped passes and their
  spread (no torch);
* :mod:`~braingui.inference.cam_methods` — class activation maps: Grad-CAM, Grad-CAM++ (medcam), HiResCAM,
  LayerCAM at any dense block or transition;
* :mod:`~braingui.inference.gradcam` — the standing medcam Grad-CAM adapter (the reference in tests);
* :mod:`~braingui.inference.faithfulness` — occlusion, sequence ablation, deletion curves, the
  model-randomisation sanity check (the pure-numpy metrics are in :mod:`braingui.explanation`);
* :mod:`~braingui.inference.explainer` — one map's explanation: the quick and the slow part, the
  ``"explanation"`` of results.json and the panel's verdict;
* :mod:`~braingui.inference.class_maps` — another class's (or method's) map and explanation, on demand;
* :mod:`~braingui.inference.interrupt` — cancel inside a network pass, one run computing at a time;
* :mod:`~braingui.inference.pipeline` — the generator that yields progress (and an early, partial result)
  and returns the result.
"""
