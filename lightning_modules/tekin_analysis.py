"""The analyses of Tekin et al. 2017 that run after a fusion network is trained.

* Figure 5: alpha, beta and the fusion weights over training -> ``fusion_weights.png`` and
  ``fusion_history.csv`` in the run folder.
* Test-time pruning (Sec. 3.1): when every trained weight is within ``model.prune_tolerance``
  of 0 or 1, the network without its inactive layers must give the same outputs; its
  parameter count and inference time (before / after) go to ``fusion_analysis.json``.
* Figure 7: squared Pearson correlation between the image-stream and confidence-map-stream
  features of the last convolutional layer (each channel averaged over space) on the first
  ``model.analysis_images`` test images -> ``feature_correlation.png``; the mean R^2 within
  and across streams go to ``fusion_analysis.json``.
"""
from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor

from lightning_modules.blocks.fusion import FusionNetwork, SigmoidFusionWeights, count_parameters, squared_correlation
from pose3d import plots


def write_fusion_history(history: list[dict[str, float]], run_dir: str | Path) -> None:
    run_dir = Path(run_dir)
    with open(run_dir / "fusion_history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    steps = [h["step"] for h in history]
    weights = {k: [h[k] for h in history] for k in history[0] if k.startswith("w")}
    plots.curves(
        run_dir / "fusion_weights.png",
        steps,
        {"(a) alpha and beta": {"alpha": [h["alpha"] for h in history], "beta": [h["beta"] for h in history]},
         "(b) fusion weights w_l": weights},
        "training step",
        "Trainable fusion over training (Tekin et al. 2017, Figure 5)",
    )


@torch.no_grad()
def inference_ms(network: FusionNetwork, inputs: dict[str, Tensor], repeats: int = 5) -> float:
    """Median wall time of one forward pass over ``inputs``, milliseconds."""
    network(inputs)  # warm-up
    times = []
    for _ in range(repeats):
        if any(v.is_cuda for v in inputs.values()):
            torch.cuda.synchronize()
        start = time.perf_counter()
        network(inputs)
        if any(v.is_cuda for v in inputs.values()):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def pruning_report(network: FusionNetwork, inputs: dict[str, Tensor], tolerance: float) -> dict:
    """Parameters and speed of the network before and after pruning, and their largest output gap."""
    full = FusionNetwork(weights=SigmoidFusionWeights(network.num_layers), **network.spec)
    report = {
        "weights": [round(float(w), 6) for w in network.weights().detach()],
        "parameters_all_layers": count_parameters(full) - 2,  # without alpha and beta
        "parameters": count_parameters(network),
        "ms_per_batch": inference_ms(network, inputs),
        "batch": len(next(iter(inputs.values()))),
        "tolerance": tolerance,
    }
    if not isinstance(network.weights, SigmoidFusionWeights):
        report["pruned_at_construction"] = True  # hand-set weights: dead layers were never built
        return report
    try:
        pruned = network.pruned(tolerance).eval()
    except ValueError as error:
        report["prunable"] = False
        report["reason"] = str(error)
        return report
    with torch.no_grad():
        gap = (network(inputs) - pruned(inputs)).abs().max().item() * 1000.0
    report.update(
        prunable=True,
        pruned_plan={"data_depth": pruned.plan.data_depth, "fusion_layers": list(pruned.plan.fusion_layers)},
        pruned_parameters=count_parameters(pruned),
        pruned_ms_per_batch=inference_ms(pruned, inputs),
        max_output_difference_mm=gap,
    )
    return report


def feature_correlation(network: FusionNetwork, inputs: dict[str, Tensor], run_dir: Path) -> dict:
    """Figure 7 on the last convolutional layer of the two data streams."""
    if set(network.streams) != {"image", "cms"} or network.plan.data_depth < network.num_conv:
        return {"skipped": "needs both data streams up to the last convolutional layer"}
    with torch.no_grad():
        maps = network.stream_features(inputs, network.num_conv)
    image, cms = (maps[name][-1].mean(dim=(2, 3)).float().cpu() for name in ("image", "cms"))
    r2 = squared_correlation(torch.cat([image, cms], dim=1))
    n_image = image.shape[1]
    cross = r2[:n_image, n_image:]
    within = [r2[:n_image, :n_image], r2[n_image:, n_image:]]
    off_diagonal = [block[~torch.eye(len(block), dtype=torch.bool)] for block in within]
    plots.matrix(
        run_dir / "feature_correlation.png",
        r2.numpy(),
        f"R^2 of last-conv features, {len(image)} test images\n(first {n_image}: image stream, then CM stream)",
        split=n_image,
        label="squared Pearson correlation",
    )
    return {
        "images": len(image),
        "mean_r2_across_streams": float(cross.mean()),
        "mean_r2_within_image_stream": float(off_diagonal[0].mean()),
        "mean_r2_within_cm_stream": float(off_diagonal[1].mean()),
    }


def analyse(module, inputs: dict[str, Tensor], run_dir: str | Path) -> dict:
    """Pruning and correlation analyses of a trained fusion module -> ``fusion_analysis.json``."""
    run_dir = Path(run_dir)
    network = module.network.eval()
    device = next(network.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    result = {
        "fusion": module.cfg.fusion,
        **({k: v for k, v in module.fusion_state().items() if k in ("alpha", "beta")}),
        "pruning": pruning_report(network, inputs, module.cfg.prune_tolerance),
        "feature_correlation": feature_correlation(network, inputs, run_dir),
    }
    (run_dir / "fusion_analysis.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
