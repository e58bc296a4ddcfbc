"""``python -m pose3d.report``: the command-line name of :mod:`harness.report`.

The entry points sit in :mod:`harness`, the layer above the shared core (they import the
methods and DataModules; the core does not), so importing this module imports nothing.
"""
if __name__ == "__main__":
    import sys

    from harness.report import main

    sys.exit(main())
