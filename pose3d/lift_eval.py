"""Lift the synthetic test split's ground-truth 2D with a pose prior, with and without the
camera's extrinsics ``E`` (Tome 2017, Sec. 5.3): the error of the prior and the lifting alone,
with no network in the way.

Command line::

    python -m pose3d.lift_eval --prior FILE.npz [--prior FILE2.npz ...] [--test-size 1024]
                               [--out results/lifting/ground_truth_2d.json]

For each prior it prints and writes MPJPE and PA-MPJPE (mm, root-relative, the labelled
visible joints as lifting weights) for ``E`` from the batch (``camera_rotation``) and for
``E = I`` (level cameras: the rotation search about the vertical must absorb the pitch).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import Tensor

from pose3d.arguments import OneLineParser, int_at_least
from pose3d.camera import known_camera_rotation
from pose3d.config import ConfigError
from pose3d.files import check_writable, write_atomic
from pose3d.metrics.functional import mpjpe
from pose3d.procrustes import procrustes_align

MODES = ("with_extrinsics", "without_extrinsics")


def lift_ground_truth(prior, batches, rotations: int = 80) -> dict[str, dict[str, float]]:
    """{mode: {"mpjpe", "pa_mpjpe"}} (mm) of lifting each batch's labelled 2D with ``prior``."""
    sums = {mode: {"mpjpe": 0.0, "pa_mpjpe": 0.0} for mode in MODES}
    count = 0
    for batch in batches:
        weights = batch["visible"].float()
        target = batch["joints_3d"] - batch["joints_3d"][:, :1]
        for mode, camera in zip(MODES, (known_camera_rotation(batch), None)):
            lifted = prior.lift(batch["joints_2d"], weights, rotations=rotations, camera_rotation=camera).joints_3d
            n = len(lifted)
            sums[mode]["mpjpe"] += float(mpjpe(lifted, target)) * n
            sums[mode]["pa_mpjpe"] += float(mpjpe(procrustes_align(lifted, target), target)) * n
        count += len(batch["joints_2d"])
    return {mode: {k: v / max(count, 1) for k, v in errors.items()} for mode, errors in sums.items()}


def synthetic_test_batches(test_size: int, batch_size: int = 256) -> list[dict[str, Tensor]]:
    from datamodules.synthetic import SyntheticDataModule

    dm = SyntheticDataModule({"test_size": test_size, "batch_size": batch_size})
    dm.setup("test")
    return list(dm.test_dataloader())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m pose3d.lift_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--prior", action="append", required=True, help="a PosePrior .npz (repeatable)")
    parser.add_argument("--test-size", type=int_at_least(1), default=1024)
    parser.add_argument("--rotations", type=int_at_least(1), default=80)
    parser.add_argument("--out", default="", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    from pose3d.ppca import PosePrior

    try:  # every prior read (and refused) and --out checked before any lifting
        priors = {path: PosePrior.load(path) for path in args.prior}
        if args.out:
            check_writable(Path(args.out).parent, "a writable folder for --out")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    batches = synthetic_test_batches(args.test_size)
    results = {}
    for path, prior in priors.items():
        results[path] = lift_ground_truth(prior, batches, args.rotations)
        for mode, errors in results[path].items():
            print(f"{path}  {mode:<18}  MPJPE {errors['mpjpe']:6.1f}  PA-MPJPE {errors['pa_mpjpe']:6.1f}  mm")
    if args.out:
        write_atomic(args.out, json.dumps({"test_size": args.test_size, "rotations": args.rotations,
                                           "priors": results}, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
