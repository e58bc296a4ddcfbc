"""``python -m pose3d.train``: the command-line name of :mod:`harness.train`.

The entry points sit in :mod:`harness`, the layer above the shared core (they import the
methods and DataModules; the core does not), so importing this module imports nothing.
"""
if __name__ == "__main__":
    import sys

    from harness.train import main

    sys.exit(main())
