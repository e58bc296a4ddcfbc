"""Units shared by every part of the project (DESIGN.md: 3D in millimetres).

Networks regress metres (outputs of order 1 train well) and report millimetres.
"""
MM_PER_METRE = 1000.0
