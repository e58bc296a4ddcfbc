"""The layer above the shared core: the entry points and the machinery that builds runs.

``pose3d`` (core: geometry, metrics, data synthesis, config schema) <- ``datamodules``,
``lightning_modules`` <- ``harness`` (train one run, resolve prerequisites, fine-tune from
another run, ablation grids, benchmarks, dataset checks). Nothing below imports from here;
the command lines keep their names (``python -m pose3d.train`` runs :mod:`harness.train`).
"""
