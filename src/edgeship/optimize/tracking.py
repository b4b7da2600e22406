"""Log an optimize run to MLflow: one parent run with the report, one nested run per variant.

Optional (the ``[mlflow]`` extra); nothing else in edgeship depends on it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgeship.errors import OptimizeError
from edgeship.optimize.report import Report

DEFAULT_EXPERIMENT = "edgeship-optimize"


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among ``values`` (MLflow metrics are floats; flags and text are not)."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_report(report: Report, report_file: Path, uri: str, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Log ``report`` to the MLflow tracking server (or store) at ``uri``; returns the parent run ID."""
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError as exc:
        raise OptimizeError("--mlflow needs MLflow", hint="install edgeship with the [mlflow] extra (mlflow-skinny)") from exc
    try:
        return _log(mlflow, report, report_file, uri, experiment)
    except MlflowException as exc:
        raise OptimizeError(f"MLflow at {uri} refused the run: {exc.message}", hint="report.json is written; log it again later") from exc


def _log(mlflow: Any, report: Report, report_file: Path, uri: str, experiment: str) -> str:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"optimize {report.source.name}") as parent:
        profiles = ",".join(p.name for p in report.profiles)
        mlflow.log_params({"source": report.source.name, "kind": report.kind, "ctx": report.ctx, "headroom": report.headroom, "profiles": profiles})
        mlflow.set_tags({f"choice.{c.profile}": c.variant or "none" for c in report.choices})
        mlflow.log_artifact(str(report_file))
        for v in report.variants:
            with mlflow.start_run(run_name=v.name, nested=True):
                mlflow.log_params({"variant": v.name, "source_model": v.source, "file": v.path.name})
                measured = {
                    "file_bytes": v.file_bytes,
                    "bits_per_weight": v.bits_per_weight,
                    "memory_bytes": v.memory,
                    "quantize_seconds": v.quantize_seconds,
                    "kl_divergence": v.kl_divergence,
                    "perplexity": v.perplexity,
                    **v.metrics,
                }
                mlflow.log_metrics(_numbers(measured))
    return str(parent.info.run_id)
