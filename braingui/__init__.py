"""braingui: an offline workstation for interpretable brain-tumour MRI analysis.

Architecture (the direction of imports is the architecture; the import-linter contracts in
``pyproject.toml``, run by ``tests/unit/test_layers.py``, check it):

``braingui`` (this package, the *core*)
    Pure numpy + nibabel: case discovery (:mod:`braingui.discovery`), safe NIfTI reading
    (:mod:`braingui.nifti`), the case model (:mod:`braingui.case`), label conventions and region
    volumes (:mod:`braingui.labels`), grid geometry with exact inverses (:mod:`braingui.geometry`),
    the paper's preprocessing (:mod:`braingui.preprocess`), the synthetic phantom
    (:mod:`braingui.phantom`) and the pre-flight report (:mod:`braingui.report`).
    No torch, no Qt.
``braingui.inference``
    torch + MONAI + medcam, no Qt: model bundles, networks, the predictor, Grad-CAM and the
    pipeline generator that yields progress events and returns one result.
``braingui.display``
    The Qt-free display model (numpy only): the one display transform, colormaps and the
    ``DisplayContext`` the linked views share, with a plain callback signal.
``braingui.ui``
    PySide6 + pyqtgraph + vtk: views, controls, the one QThread worker and the main window.
``braingui.app``
    The entry points: the command line (:mod:`braingui.app.cli`, argument parsing; starts the GUI or
    runs headless), ``python -m braingui.app``, the installation self-test and the built-in demo case.

Array convention: every volume is stored in RAS+ voxel order (``nibabel.as_closest_canonical``)
as a read-only ``float32`` array indexed ``[x, y, z]`` (x: left->right, y: posterior->anterior,
z: inferior->superior). Results are mapped back onto each file's original grid only when written.

Paper: S. Dasanayaka et al., "Interpretable Machine Learning for Brain Tumor Analysis Using MRI".
"""

__version__ = "0.1.0"
