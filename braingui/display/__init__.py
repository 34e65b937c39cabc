"""The display model, Qt-free: what the linked views show and how.

* :mod:`braingui.display.planes` - the one display transform (voxel <-> screen pixel, per plane and
  convention);
* :mod:`braingui.display.colormaps` - heat-map colormaps and label colours as RGBA arrays;
* :mod:`braingui.display.context` - :class:`~braingui.display.context.DisplayContext`, the state the
  four panes share (case, result, plane, slice, modality, window, opacities, colormap, shown class,
  convention) with a ``changed`` signal (:mod:`braingui.display.signal`).

The Qt views in :mod:`braingui.ui` subscribe to it; the PDF report, batch runs and tests use the same
state without widgets. Imports numpy and the core only.
"""
