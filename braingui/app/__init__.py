"""Entry points: the ``braingui`` command (:mod:`braingui.app.cli`), ``python -m braingui.app``, the
self-test of an installation (:mod:`braingui.app.selftest`) and the built-in demo case
(:mod:`braingui.app.demo`). The top of the layers: it may import every other package, nothing imports it."""
