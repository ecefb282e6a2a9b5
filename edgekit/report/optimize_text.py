"""What `edgekit optimize` prints: pure, the report in, lines out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.report.text import optimization_lines


def optimize_lines(report: dict[str, Any], out: Path) -> list[str]:
    """The file's size against the float model's, the metric before and after against the allowed drop, the
    zeros in each weight op, then what each optimization step did."""
    metric, before, after = report["metric"], report["before"], report["after"]
    return [f"{out}: {after['format']}, {after['size_bytes']:,} bytes (gzip {after['gzip_bytes']:,}); float32 "
            f"{before['size_bytes']:,} (gzip {before['gzip_bytes']:,})",
            f"{metric}: {before[metric]:.4f} -> {after[metric]:.4f} ({report['drop_points']:+.2f} points, "
            f"allowed {report['max_drop']:g}) on {report['test_samples']} test samples",
            *(f"  {row['layer']}: {row['sparsity']:.1%} zeros of {row['weights']:,} weights"
              for row in report["artifact_sparsity"]),
            *optimization_lines(report)]
