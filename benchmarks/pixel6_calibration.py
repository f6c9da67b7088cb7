"""Host -> Pixel 6 calibration: the fitted mapping and its leave-one-out error, as JSON.

    python benchmarks/pixel6_calibration.py [--host TABLE] [--out benchmarks/results/pixel6_calibration.json]

Writes the fit the estimated Pixel 6 table uses (predictors/latency/pixel6.py) and, beside it, the
alternatives one could argue for, each with its leave-one-out error on the same published
figures: pure scaling (b = 0), and EfficientNet-Lite2 taken at 260 px instead of the 224 px its
task table states (when the host table has 260 px units). Machine and library versions are
recorded because the host table, and so the fit, depends on them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

from nas.atomic import atomic_write_text
from nas.cli.latency_estimate import host_table, shown_path
from nas.cli.main import error_line  # noqa: E402
from nas.errors import UserError
from predictors.latency import pixel6
from predictors.latency.table import cpu_model

DEFAULT_OUT = Path(__file__).parent / "results" / "pixel6_calibration.json"


def versions() -> dict[str, str]:
    import numpy
    import onnxruntime
    import torch

    return {"python": platform.python_version(), "numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__}


def variants(host) -> dict[str, dict]:
    """Alternative fits on the same figures, for comparison with the one shipped."""
    out = {}
    points = pixel6.calibration_points(host)
    for method in pixel6.FITS:
        out[f"{method}, lite2@260"] = pixel6.calibrate(points, method)
    lite2_224 = [a if a.zoo != "efficientnet_lite2" else pixel6.Anchor(a.zoo, a.model, 224) for a in pixel6.ANCHORS]
    try:
        points_224 = pixel6.calibration_points(host, lite2_224)
    except UserError as exc:
        out["lite2@224"] = {"skipped": str(exc)}
    else:
        for method in pixel6.FITS:
            out[f"{method}, lite2@224"] = pixel6.calibrate(points_224, method)
    return {k: {f: v.get(f) for f in ("a", "b_ms", "loo_error_pct", "error_pct", "points", "skipped") if f in v}
            for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="host", help="measured host table: device name or file (default host)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    try:
        host, path = host_table(args.host)
        table = pixel6.estimate_table(host, shown_path(path))
        result = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "platform": platform.platform(), "machine": platform.machine()},
            "versions": versions(),
            "host_table": {"path": shown_path(path), "cpu": host.cpu, "ort_version": host.ort_version,
                           "threads": host.threads, "created": host.created, "entries": len(host.entries),
                           "resolutions": host.resolutions},
            "shipped": table.estimate,
            "variants": variants(host),
        }
    except UserError as exc:
        print(error_line(exc, parser), file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(result, indent=1, sort_keys=True) + "\n")
    est = table.estimate or {}
    print(f"{args.out}: a={est['a']:.4f} b={est['b_ms']:.3f} ms, LOO {est['loo_error_pct']}, "
          f"median |error| {est['error_pct']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
