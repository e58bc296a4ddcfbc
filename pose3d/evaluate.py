"""``python -m pose3d.evaluate``: the command-line name of :mod:`harness.evaluate` (score a run or a
pose prior on a dataset's test split without training).

The entry points sit in :mod:`harness`, the layer above the shared core (they import the
methods and DataModules; the core does not), so importing this module imports nothing.
"""
if __name__ == "__main__":
    import sys

    from harness.evaluate import main

    sys.exit(main())
