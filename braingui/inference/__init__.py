"""Inference: model bundles, networks, the predictor, Grad-CAM and the pipeline (torch + MONAI, no Qt).

Modules (import them directly; this package imports nothing, so the torch-free ones stay torch-free):

* :mod:`~braingui.inference.manifest` — the bundle manifest schema and :class:`BundleError` (no torch);
* :mod:`~braingui.inference.locate` — where bundles are found: ``--models``, ``BRAINGUI_MODELS``, the
  user data folder, the bundled models (no torch);
* :mod:`~braingui.inference.bundle` — checked weight loading (``weights_only``, sha256, keys, shapes)
  and :func:`write_bundle`;
* :mod:`~braingui.inference.networks` — the MONAI networks a manifest can name;
* :mod:`~braingui.inference.predictor` — device choice, loaded models, sliding windows;
* :mod:`~braingui.inference.gradcam` — the medcam adapter (the only module that imports medcam);
* :mod:`~braingui.inference.pipeline` — the generator that yields progress and returns the result.
"""
