"""``python -m pose3d.h36m_standin``: the command-line name of :mod:`harness.h36m_standin` (a stand-in
for VideoPose3D's Human3.6M pose files, with the real files' layout, units and frame counts).

The entry points sit in :mod:`harness`, the layer above the shared core (they import the
methods and DataModules; the core does not), so importing this module imports nothing.
"""
if __name__ == "__main__":
    import sys

    from harness.h36m_standin import main

    sys.exit(main())
