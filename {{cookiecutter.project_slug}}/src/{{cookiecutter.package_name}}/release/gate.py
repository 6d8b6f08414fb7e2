"""`gate`: may the challenger become the champion? Floors, the champion to beat, and drift.

The decision and every reason go to reports/gate.md, the same markdown for the terminal, the pull
request comment and the job summary. Exit status 0 means pass, 1 means fail. `--metrics` judges
a model that is evaluated but not registered, as a pull request's is. Registered versions (the
champion, a registered challenger) are scored again on this checkout's test split, so that both
models are measured on the same rows.
"""

import argparse
from pathlib import Path

from ..core.config import (
    CHALLENGER,
    CHAMPION,
    GATE_REPORT,
    METRICS_FILE,
    PRODUCTION_IDS,
    MlflowParams,
    embedded_store,
    load_params,
    tracking_uri,
)
from ..core.files import write_text_atomic
from .verdict import (
    Candidate,
    Verdict,
    judge,
    markdown,
    parse_metrics,
    read_drift,
    read_metrics,
)


def champion_of(params: MlflowParams) -> Candidate | None:
    """The champion to beat, if any. An embedded store that does not exist yet (a new CI
    runner's) has none: that is known without importing MLflow or creating the store."""
    store = embedded_store(tracking_uri(params))
    if store is not None and not store.is_file():
        return None
    from .registry import champion_candidate

    return champion_candidate(params)


def base_model(name: str, base: str) -> Candidate | None:
    """The base branch's model, by the metrics committed at revision `base`; None without them."""
    from .lineage import committed, pointer, production_ids_md5

    text = committed(base, METRICS_FILE)
    if text is None:
        return None
    metrics = parse_metrics(text, f"{base}:{METRICS_FILE}")
    production_ids = production_ids_md5(committed(base, pointer(PRODUCTION_IDS)))
    return Candidate(name, None, metrics, committed_at=base, production_ids=production_ids)


def trained_like(base: str) -> bool:
    """Whether this model was trained from the code, data and parameters of revision `base`."""
    from .lineage import DVC_LOCK, UNKNOWN, committed, train_inputs

    ours = train_inputs()
    return ours != UNKNOWN and ours == train_inputs(committed(base, DVC_LOCK) or "")


def run_gate(
    version: str | None = None, metrics: Path | None = None, base: str | None = None
) -> tuple[Verdict, str]:
    """Judge `version` (default: the challenger), or the unregistered model whose `metrics`
    file is given, and write the report; both are returned. With `base` (a git revision), an
    unregistered model is judged against the base branch's committed metrics when the registry
    has no champion."""
    params = load_params()
    unchanged = False
    if metrics is not None:
        from .lineage import trained_on_production

        challenger = Candidate(
            params.mlflow.model_name,
            None,
            read_metrics(metrics),
            production_ids=trained_on_production(),
        )
        champion = champion_of(params.mlflow)
        if base is not None:
            champion = champion or base_model(params.mlflow.model_name, base)
            unchanged = trained_like(base)
    else:
        from .registry import candidates

        challenger, champion = candidates(params.mlflow, version)
    if challenger.version is not None or (champion and champion.version is not None):
        from .rescore import held_out, rescored

        rows = held_out()
        challenger = rescored(params.mlflow, challenger, rows)
        if champion is not None:
            champion = rescored(params.mlflow, champion, rows)
    verdict = judge(params.gate, challenger, champion, read_drift(), unchanged)
    report = markdown(verdict, params.gate)
    write_text_atomic(GATE_REPORT, report)
    return verdict, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gate", description=__doc__)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--version", help=f"the model version to judge (default: the '{CHALLENGER}')"
    )
    which.add_argument(
        "--metrics",
        type=Path,
        help="judge the evaluated model whose metrics are in this file, before it is registered",
    )
    parser.add_argument(
        "--base",
        help="with --metrics: the base branch's git revision, whose committed metrics are the "
        "champion to beat when the registry has none",
    )
    args = parser.parse_args(argv)
    if args.base is not None and args.metrics is None:
        parser.error("--base needs --metrics: it judges an unregistered model")
    if args.base is not None and (not args.base or args.base.startswith("-")):
        parser.error(f"--base: {args.base!r} is not a git revision")
    verdict, report = run_gate(args.version, args.metrics, args.base)
    print(report, end="")
    print(f"gate: report in {GATE_REPORT}; '{CHAMPION}' unchanged")
    return 0 if verdict.passed else 1
