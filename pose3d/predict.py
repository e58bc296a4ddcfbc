"""``python -m pose3d.predict``: the command-line name of :mod:`harness.predict`.

The entry points sit in :mod:`harness`, the layer above the shared core (they import the
methods and DataModules; the core does not), so importing this module imports nothing.
"""
if __name__ == "__main__":
    import sys

    from harness.predict import main

    sys.exit(main())
