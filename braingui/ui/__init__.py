"""The desktop app (PySide6 + pyqtgraph): four linked panes, controls, results and one worker thread.

Data flows one way, as in FSLeyes: case and result -> :class:`braingui.display.context.DisplayContext`
(the Qt-free display state every view shares, with the one display transform and the colormaps in
:mod:`braingui.display`) -> the views, which subscribe to its ``changed`` signal. Modules:

* :mod:`slice_view` - one pane; :mod:`pane_grid` - the four linked panes of the paper's Fig. 1;
* :mod:`legend` - the Grad-CAM colour bar and the label key;
* :mod:`controls` - depth slider, plane switch, look controls; :mod:`readout` - cursor read-out;
* :mod:`results_panel` - prediction, probabilities, volumes, model cards, device, timings;
* :mod:`worker` - the QObject worker in a QThread; :mod:`jobs` - the load and analysis jobs;
* :mod:`exporter` - NIfTI / PNG / JSON export; :mod:`settings` - settings and recent cases;
* :mod:`surface_view` - the optional 3D tumour view (vtk; only with a real screen);
* :mod:`actions` - menus and keys; :mod:`main_window` - the window; :mod:`app` - start-up, screenshots;
* :mod:`refcount_guard` - a work-around for a PySide6 6.12 reference-count bug (imported first).

Nothing here is imported by the core or by :mod:`braingui.inference`; torch is imported only inside
the analysis worker thread.
"""

from braingui.ui import refcount_guard as _refcount_guard

_refcount_guard.install()  # PySide6 6.12 + CPython 3.11 refcount bug; see that module
