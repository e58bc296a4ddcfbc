"""pose3d: the shared core of pose3d-lab (skeletons, cameras, alignment, heatmaps,
metrics, the synthetic renderer, configuration and the train entry point)."""
