"""The stages end to end against a real MLflow store: registration, lineage and promotion."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from {{ cookiecutter.package_name }}.__main__ import COMMANDS, LOAD_MODELS, main
from {{ cookiecutter.package_name }}.core.checks import read_table
from {{ cookiecutter.package_name }}.core.config import (
    CHALLENGER,
    CHAMPION,
    GATE_REPORT,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_VERSION_FILE,
    PARAMS_FILE,
    PREVIOUS,
    PRODUCTION_IDS,
    RAW_DATA,
    TEST_DATA,
    TRAIN_DATA,
    load_params,
)
from {{ cookiecutter.package_name }}.core.errors import ModelError, RegistryError
from {{ cookiecutter.package_name }}.core.estimators import build_pipeline
from {{ cookiecutter.package_name }}.core.metrics import score
from {{ cookiecutter.package_name }}.core.model_file import (
    BENTO_MODEL,
    FILE_NAME,
    MODEL_SHA256,
    load_model,
    save_model,
    sha256,
)
from {{ cookiecutter.package_name }}.core.schema import load_schema
from {{ cookiecutter.package_name }}.release.bento import from_checkout
from {{ cookiecutter.package_name }}.release.lineage import (
    NO_PRODUCTION_ROWS,
    PRODUCTION_IDS_MD5,
    TRAIN_INPUTS,
    md5,
    pointer,
)
from {{ cookiecutter.package_name }}.release.registry import (
    MODEL_MD5,
    candidates,
    load_registered,
    move_aliases,
)
from {{ cookiecutter.package_name }}.release.verdict import learned_drift

from .conftest import UNTRUSTED, malicious_model, scratch_project

LINEAGE_TAGS = {
    "git_commit",
    "git_dirty",
    "data_md5",
    "params_sha256",
    PRODUCTION_IDS_MD5,
    "run_id",
    MODEL_MD5,
    MODEL_SHA256,
}

# A number as a data row would be written (JSON, CSV, YAML, a list; 1.5, -2, 3e-05), not the digits
# inside an identifier, a version or a time (m-3a42036ab2, 3.11.2, 21:46:36): those matched a
# diabetes row's small integers in one MLmodel file of five.
NUMBER = re.compile(r"(?<![\w.-])(?<!\d:)-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])(?!:\d)")


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {
        alias: str(client.get_model_version_by_alias(name, alias).version)
        for alias in client.get_registered_model(name).aliases
    }


# The stages that write no registry: their outputs depend only on params.yaml and the data, the
# same in every scratch project, so they run once for the module and their files are copied.
UNREGISTERED = ("prepare", "train", "evaluate", "drift")


@pytest.fixture(scope="module")
def unregistered_run(
    tmp_path_factory: pytest.TempPathFactory, raw_data: pd.DataFrame, empty_store: Path
) -> Path:
    """A scratch project of its own in which prepare, train, evaluate and drift ran once."""
    with scratch_project(tmp_path_factory.mktemp("stages"), empty_store) as folder:
        for stage in UNREGISTERED:
            assert main([stage]) == 0, stage
    return folder


@pytest.fixture
def pipeline_run(workdir: Path, unregistered_run: Path) -> tuple[MlflowClient, str]:
    """Every stage's outputs in the scratch project, and its model registered in its own store
    (the other stages' files copied from `unregistered_run`, whose inputs are the same)."""
    shutil.copytree(unregistered_run, workdir, dirs_exist_ok=True)
    assert main(["register"]) == 0
    return MlflowClient(), load_params().mlflow.model_name


def register_again() -> None:
    """Register the same model file as a new version, as if it had never been registered: the
    registry forgets which file and which training inputs each version is."""
    client, name = MlflowClient(), load_params().mlflow.model_name
    for version in client.search_model_versions(f"name='{name}'"):
        for tag in (MODEL_MD5, TRAIN_INPUTS):
            client.delete_model_version_tag(name, version.version, tag)
    assert main(["register"]) == 0


def test_the_commands_that_load_models_are_commands() -> None:
    assert LOAD_MODELS.issubset(COMMANDS)


def test_register_logs_the_evaluated_model_as_the_challenger(
    workdir: Path, pipeline_run: tuple[MlflowClient, str]
) -> None:
    client, name = pipeline_run
    metrics = json.loads((workdir / METRICS_FILE).read_text(encoding="utf-8"))
    record = json.loads((workdir / MODEL_VERSION_FILE).read_text(encoding="utf-8"))
    md5 = record[MODEL_MD5]
    assert record == {
        "name": name,
        "version": 1,
        "alias": CHALLENGER,
        "run_id": record["run_id"],
        MODEL_MD5: md5,
    }
    version = client.get_model_version(name, "1")
    assert set(version.tags) >= LINEAGE_TAGS
    assert version.tags[MODEL_MD5] == md5
    # The registry keeps the file DVC tracks, byte for byte: the hashes are those of its copy.
    model_file = (workdir / MODEL_FILE).read_bytes()
    assert version.tags[MODEL_SHA256] == sha256(model_file)
    assert registry_file(client, name, "1").read_bytes() == model_file
    assert aliases(client, name) == {CHALLENGER: "1"}
    run = client.get_run(record["run_id"])
    assert run.data.metrics == pytest.approx(metrics)
    assert run.data.params["train.estimator"] == load_params().train.estimator


def test_no_row_of_the_data_reaches_mlflow(
    tmp_path: Path, pipeline_run: tuple[MlflowClient, str]
) -> None:
    """Every MLflow user may read a run's and a model's files: none holds a row of the data
    (the signature comes from a made-up row, and no input example is logged)."""
    client, name = pipeline_run
    run_id = client.get_model_version(name, "1").run_id
    run = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "run"))
    model = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "m"))
    files = [*Path(run).rglob("*"), *Path(model).rglob("*")]
    assert any(file.name == "MLmodel" for file in files)
    assert not [file.name for file in files if "example" in file.name]
    schema = load_schema()
    data = read_table(RAW_DATA, schema)[schema.feature_names]
    rows = [set(map(float, values)) for values in data.itertuples(index=False)]
    for file in files:
        try:
            text = file.read_text(encoding="utf-8") if file.is_file() else ""
        except UnicodeDecodeError:
            continue  # the model file (a zip of arrays: fitted parameters, not rows) and plots
        numbers = {float(found) for found in NUMBER.findall(text)}
        for row in rows:
            assert len(row & numbers) < len(row) / 2, f"{file.name} holds a row of the data"


def test_evaluate_leaves_mlflow_alone(storeless: Path) -> None:
    for stage in ("prepare", "train", "evaluate"):
        assert main([stage]) == 0, stage
    assert (storeless / METRICS_FILE).is_file()
    assert not (storeless / "mlflow.db").exists()
    assert not (storeless / MODEL_VERSION_FILE).exists()


def test_a_model_file_is_registered_once(
    workdir: Path,
    pipeline_run: tuple[MlflowClient, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, name = pipeline_run
    capsys.readouterr()
    assert main(["register"]) == 0
    assert "is already version 1" in capsys.readouterr().out
    versions = client.search_model_versions(f"name='{name}'")
    assert [str(version.version) for version in versions] == ["1"]

    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["train"]["seed"] += 1
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")
    for stage in ("train", "evaluate", "register"):
        assert main([stage]) == 0, stage
    assert aliases(client, name) == {CHALLENGER: "2"}

    # The record names a version of another registry: this one gets its own first version.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'other.db'}")
    assert main(["register"]) == 0
    assert json.loads(MODEL_VERSION_FILE.read_text(encoding="utf-8"))["version"] == 1


def write_lock(seed: int, model_md5: str | None = None) -> None:
    """A dvc.lock whose train stage read this project's code and data and `seed`, and wrote a
    model file with `model_md5`."""
    train = {
        "cmd": "python -m package train",
        "deps": [{"path": "data/prepared/train.csv", "hash": "md5", "md5": "0" * 32}],
        "params": {"params.yaml": {"train": {"seed": seed}}},
        "outs": [{"path": str(MODEL_FILE), "hash": "md5", "md5": model_md5 or str(seed) * 32}],
    }
    lock = {"schema": "2.0", "stages": {"train": train}}
    Path("dvc.lock").write_text(yaml.safe_dump(lock), encoding="utf-8")


def test_a_model_trained_again_from_the_same_inputs_is_the_same_version(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retrained model is a new file (skops names its entries after objects in memory); trained
    from the same code, data and parameters, it is the version the registry already holds."""
    write_lock(seed=1)
    for stage in ("prepare", "train", "evaluate", "register"):
        assert main([stage]) == 0, stage
    client, name = MlflowClient(), load_params().mlflow.model_name  # the URI register set
    first = (workdir / MODEL_FILE).read_bytes()
    assert main(["train"]) == 0
    assert (workdir / MODEL_FILE).read_bytes() != first
    capsys.readouterr()
    assert main(["register"]) == 0
    assert "is already version 1" in capsys.readouterr().out
    assert [str(found.version) for found in client.search_model_versions(f"name='{name}'")] == ["1"]

    write_lock(seed=2)  # other inputs: a new version
    assert main(["register"]) == 0
    assert aliases(client, name) == {CHALLENGER: "2"}


def test_a_rolled_back_model_stays_out_until_forced_back(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    register_again()
    assert main(["promote"]) == 0
    assert main(["rollback", "--reason", 'AUC fell on "cohort B"']) == 0
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "1", PREVIOUS: "1"}

    # The same model comes back (a push that changes nothing): the same version, refused.
    capsys.readouterr()
    assert main(["register"]) == 0
    assert "is already version 2" in capsys.readouterr().out
    assert main(["promote"]) == 1
    report = capsys.readouterr().out
    assert 'version 2 was rolled back (AUC fell on "cohort B")' in report
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "1", PREVIOUS: "1"}

    assert main(["promote", "--version", "2", "--force", "--reason", "fixed upstream"]) == 0
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "2", PREVIOUS: "1"}
    tags = client.get_model_version(name, "2").tags
    assert tags["rolled_back"] == "false"  # lifted by setting it: a delete takes MANAGE
    assert tags["rollback_reason"] == 'AUC fell on "cohort B"'  # the history stays


def test_the_gate_judges_an_unregistered_model_without_mlflow(storeless: Path) -> None:
    """What a pull request runs: no registry yet, so floors only, and MLflow is not imported."""
    for stage in ("prepare", "train", "evaluate", "drift"):
        assert main([stage]) == 0, stage
    package = main.__module__.rpartition(".")[0]
    script = (
        f"import sys; from {package}.__main__ import main; "
        f"code = main(['gate', '--metrics', '{METRICS_FILE}']); "
        "sys.exit(10 if 'mlflow' in sys.modules else code)"
    )
    source = str(Path(sys.modules[package].__file__ or "").parents[1])
    env = {**os.environ, "PYTHONPATH": source}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the model of this branch (evaluated, not registered)" in result.stdout
    assert "no champion yet (floors only)" in result.stdout
    assert "**Decision: pass.** The model of this branch may become the champion." in result.stdout
    assert not (storeless / "mlflow.db").exists()


def test_the_gate_compares_an_unregistered_model_with_the_champion(
    workdir: Path, pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["gate"]["min_improvement"] = 0.001  # the same model cannot beat itself by that
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")
    capsys.readouterr()
    assert main(["gate", "--metrics", str(METRICS_FILE)]) == 1
    report = capsys.readouterr().out
    assert "against champion version 1" in report
    assert "**Decision: fail.** The model of this branch stays out" in report
    assert "does not beat the champion's" in report
    assert aliases(client, name) == {CHALLENGER: "1", CHAMPION: "1"}


def gate_cell(report: str, metric: str, column: int) -> str:
    """One cell of the gate table's row for `metric`: 1 the champion, 2 the challenger."""
    (row,) = [line for line in report.splitlines() if line.startswith(f"| {metric} ")]
    return row.split("|")[column + 1].strip()


def test_the_gate_scores_the_champion_again_on_this_test_split(
    workdir: Path, pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A challenger trained on fresher data is evaluated on a newer split: the champion is
    measured on the same rows, not judged by what it logged on its own."""
    client, name = pipeline_run
    assert main(["promote"]) == 0
    logged = client.get_run(str(client.get_model_version(name, "1").run_id)).data.metrics
    # Another test split, as new data would make: half the rows, the targets shuffled.
    schema = load_schema()
    split = read_table(TEST_DATA, schema).head(60)
    target = schema.target.name
    split[target] = split[target].sample(frac=1.0, random_state=0).to_numpy()
    split.to_csv(TEST_DATA, index=False)
    expected = score(load_model(MODEL_FILE), split[schema.feature_names], split[target])
    metric = next(name for name in expected if abs(expected[name] - logged[name]) > 1e-3)

    capsys.readouterr()
    main(["gate", "--metrics", str(METRICS_FILE)])
    report = capsys.readouterr().out
    assert "against champion version 1." in report
    assert (
        f"Both models are measured on the same rows, this checkout's test split "
        f"(`{TEST_DATA}`, 60 rows)"
    ) in report
    shown = gate_cell(report, metric, 1).strip("*")
    assert shown == f"{expected[metric]:.4f}" != f"{logged[metric]:.4f}"
    # `gate --version`: a registered challenger is scored on the same rows too.
    main(["gate", "--version", "1"])
    report = capsys.readouterr().out
    assert gate_cell(report, metric, 2) == f"{expected[metric]:.4f}"

    # Without a test split, the logged metrics stand, and the report says why.
    TEST_DATA.unlink()
    main(["gate", "--metrics", str(METRICS_FILE)])
    report = capsys.readouterr().out
    assert "Both models are measured" not in report
    assert (
        "The champion's metrics are those version 1 logged on the test split of its own data: "
        f"it was not scored on this checkout's ({TEST_DATA} is missing; `make evaluate` makes it)."
    ) in report
    assert gate_cell(report, metric, 1).strip("*") == f"{logged[metric]:.4f}"


def test_a_version_records_the_production_rows_it_was_trained_on(
    workdir: Path, pipeline_run: tuple[MlflowClient, str]
) -> None:
    """The lineage that lets drift pass for a model retrained on production's labelled rows."""
    client, name = pipeline_run
    assert client.get_model_version(name, "1").tags[PRODUCTION_IDS_MD5] == NO_PRODUCTION_ROWS
    assert main(["promote"]) == 0
    # `make refresh` added labelled production rows: their id list is tracked by DVC.
    production_md5 = "5d41402abc4b2a76b9719d911017c592"
    pointer(PRODUCTION_IDS).write_text(
        f"outs:\n- md5: {production_md5}\n  size: 33\n  path: production_ids.txt\n",
        encoding="utf-8",
    )
    register_again()
    challenger, champion = candidates(load_params().mlflow)
    assert challenger.version == "2"
    assert (challenger.production_ids, champion and champion.production_ids) == (
        production_md5,
        NO_PRODUCTION_ROWS,
    )
    assert learned_drift(challenger, champion)


def test_the_gate_judges_a_version_or_a_metrics_file_not_both(
    pipeline_run: tuple[MlflowClient, str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["gate", "--version", "1", "--metrics", str(METRICS_FILE)])
    assert exit_.value.code == 2


def test_promote_keeps_the_previous_champion(pipeline_run: tuple[MlflowClient, str]) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    assert aliases(client, name) == {CHALLENGER: "1", CHAMPION: "1"}
    assert client.get_model_version(name, "1").tags["gate"] == "passed"
    register_again()
    assert main(["promote"]) == 0
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "2", PREVIOUS: "1"}
    assert main(["promote", "--version", "1"]) == 0
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "1", PREVIOUS: "2"}


def test_rollback_walks_back_through_the_champions(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    for _ in range(2):
        register_again()  # versions 2 and 3, as good as version 1
    for version in ("1", "2", "3"):
        assert main(["promote", "--version", version]) == 0
    assert aliases(client, name) == {CHALLENGER: "3", CHAMPION: "3", PREVIOUS: "2"}

    assert main(["rollback"]) == 0
    assert aliases(client, name) == {CHALLENGER: "3", CHAMPION: "2", PREVIOUS: "1"}
    assert client.get_model_version(name, "3").tags["rolled_back"] == "true"
    assert main(["rollback"]) == 0
    # The end of the history: `previous` on the champion itself (no alias removed).
    assert aliases(client, name) == {CHALLENGER: "3", CHAMPION: "1", PREVIOUS: "1"}
    capsys.readouterr()
    assert main(["rollback"]) == 1
    assert "version 1 has no 'previous' champion to roll back to" in capsys.readouterr().err
    assert aliases(client, name) == {CHALLENGER: "3", CHAMPION: "1", PREVIOUS: "1"}


def test_rollback_without_a_champion_says_so(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback"]) == 1
    assert "no champion to roll back" in capsys.readouterr().err


def test_promote_refuses_a_model_that_does_not_beat_the_champion(
    workdir: Path, pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    register_again()  # version 2: the same model, so no better than version 1
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["gate"]["min_improvement"] = 0.001
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")
    capsys.readouterr()

    assert main(["gate"]) == 1
    assert main(["promote"]) == 1
    output = capsys.readouterr().out
    assert "**Decision: fail.** Version 2 stays out" in output
    assert "refused by the gate" in output
    assert "does not beat the champion's" in (workdir / GATE_REPORT).read_text(encoding="utf-8")
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "1"}
    assert "gate" not in client.get_model_version(name, "2").tags

    assert main(["promote", "--force", "--reason", "hotfix approved by the team"]) == 0
    tags = client.get_model_version(name, "2").tags
    assert (tags["gate"], tags["gate_reason"]) == ("forced", "hotfix approved by the team")
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "2", PREVIOUS: "1"}


def test_force_needs_a_reason(pipeline_run: tuple[MlflowClient, str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["promote", "--force"])
    assert exit_.value.code == 2


def test_an_unreachable_registry_is_one_clear_line(
    pipeline_run: tuple[MlflowClient, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, name = pipeline_run
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for command in (["promote", "--force", "--reason", "test"], ["rollback"], ["gate"]):
        assert main(command) == 1
        error = capsys.readouterr().err
        assert error == (
            f"ERROR: MLflow at http://127.0.0.1:{port}: nothing answers there (connection "
            "refused): start the server (`make stack` starts the stack's) or point "
            "MLFLOW_TRACKING_URI at one that runs, then run this again\n"
        )
    assert aliases(client, name) == {CHALLENGER: "1"}


class FailingClient(MlflowClient):
    """A real registry client whose move of one alias fails, as a dropped connection would."""

    def __init__(self, failing_alias: str) -> None:
        super().__init__()
        self.failing_alias = failing_alias

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if alias == self.failing_alias:
            raise MlflowException("connection reset")
        super().set_registered_model_alias(name, alias, version)


def test_aliases_are_never_left_half_moved(pipeline_run: tuple[MlflowClient, str]) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    register_again()
    before = aliases(client, name)
    with pytest.raises(RegistryError, match="they were left as they were"):
        move_aliases(FailingClient(PREVIOUS), name, {CHAMPION: "2", PREVIOUS: "1"})
    assert aliases(client, name) == before


def test_promote_refuses_an_unknown_version(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    assert main(["promote", "--version", "7"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: MLflow at sqlite:///")
    assert aliases(client, name) == {CHALLENGER: "1"}


def test_the_champion_loads_and_predicts_like_the_trained_model(
    workdir: Path, pipeline_run: tuple[MlflowClient, str]
) -> None:
    settings = load_params().mlflow
    with pytest.raises(RegistryError, match="no version is 'champion' yet"):
        load_registered(settings)
    assert main(["promote"]) == 0
    champion = load_registered(settings)
    assert (champion.name, champion.version, champion.alias) == (settings.model_name, "1", CHAMPION)
    schema = load_schema()
    features = read_table(workdir / TEST_DATA, schema)[schema.feature_names]
    trained = load_model(workdir / MODEL_FILE)
    np.testing.assert_array_equal(champion.estimator.predict(features), trained.predict(features))


def registry_file(client: MlflowClient, name: str, version: str) -> Path:
    """Where the registry's store keeps the model file of `version`, on disk."""
    model_id = str(client.get_model_version(name, version).source).removeprefix("models:/")
    [found] = Path("mlruns").glob(f"*/models/{model_id}/artifacts/{FILE_NAME}")
    return found


def another_model(path: Path) -> None:
    """Save a valid model at `path` that predicts otherwise than the registered one."""
    schema = load_schema()
    train = read_table(TRAIN_DATA, schema)
    params = load_params().train.model_copy(update={"estimator": "random_forest", "seed": 99})
    other = build_pipeline(params).fit(train[schema.feature_names], train[schema.target.name])
    save_model(other, path)


# Every command that downloads a registered model: what `make serve` runs first, `make bento`,
# `make batch` and `make onnx`.
# Every command that downloads a registered model: the gate scores it again.
DOWNLOADS = [
    ["champion"],
    ["bento"],
    ["batch", str(TEST_DATA), "predictions.csv"],
    ["onnx"],
    ["gate"],
]


def assert_refused(command: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`command` fails with `error` as its one line, and writes no output and no BentoML model."""
    capsys.readouterr()
    assert main(command) == 1, command
    assert capsys.readouterr().err == f"ERROR: {error}\n", command
    assert not Path("predictions.csv").exists()
    # BentoML fixes its store's folder for the process when first used: nothing here uses it.
    assert not (Path(os.environ["BENTOML_HOME"]) / "models").exists()


def command(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m <package> *args` in its own process (its own BentoML store: BENTOML_HOME)."""
    package = main.__module__.rpartition(".")[0]
    source = str(Path(sys.modules[package].__file__ or "").parents[1])
    return subprocess.run(
        [sys.executable, "-m", package, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": source},
        check=False,
    )


def test_serving_stores_the_checked_file_byte_for_byte(
    pipeline_run: tuple[MlflowClient, str],
) -> None:
    """What `make serve` and `make bento` put in BentoML's store is the registered file."""
    client, name = pipeline_run
    assert main(["promote"]) == 0
    result = command("champion")
    assert result.returncode == 0, result.stderr
    [stored] = (Path(os.environ["BENTOML_HOME"]) / "models" / BENTO_MODEL).glob(f"*/{FILE_NAME}")
    assert stored.read_bytes() == registry_file(client, name, "1").read_bytes()
    labels = yaml.safe_load((stored.parent / "model.yaml").read_text(encoding="utf-8"))["labels"]
    assert labels[MODEL_SHA256] == sha256(stored.read_bytes())
    assert labels["mlflow_version"] == "1"


def test_a_registered_file_changed_in_the_store_is_refused_by_every_download(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    swapped = registry_file(client, name, "1")
    registered = sha256(swapped.read_bytes())
    another_model(swapped)
    changed = sha256(swapped.read_bytes())
    error = (
        f"{name} version 1: refused: the downloaded {FILE_NAME} has sha256 {changed}, but the "
        f"version was registered with {MODEL_SHA256} {registered}; the registry's artifact was "
        "changed after registration"
    )
    for command in DOWNLOADS:
        assert_refused(command, error, capsys)


def test_a_version_without_a_file_hash_is_refused_until_one_is_recorded(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A version registered before versions recorded their file's hash (older code)."""
    client, name = pipeline_run
    assert main(["promote"]) == 0
    recorded = client.get_model_version(name, "1").tags[MODEL_SHA256]
    client.delete_model_version_tag(name, "1", MODEL_SHA256)
    error = (
        f"{name} version 1: refused: the version has no {MODEL_SHA256} tag (it was registered "
        "before versions recorded their file's hash), so its file cannot be checked; if you "
        f"trust the file the registry holds, tag the version {MODEL_SHA256}={recorded} (see "
        "docs: Serving, model integrity)"
    )
    for download in DOWNLOADS:
        assert_refused(download, error, capsys)
    client.set_model_version_tag(name, "1", MODEL_SHA256, recorded)
    assert load_registered(load_params().mlflow).version == "1"


def test_a_registered_file_that_would_run_code_is_refused_by_every_download(
    tmp_path: Path, pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Even with its hash tag changed to match, as someone who may edit the registry could."""
    client, name = pipeline_run
    assert main(["promote"]) == 0
    marker = tmp_path / "marker"
    data = malicious_model(registry_file(client, name, "1"), marker)
    client.set_model_version_tag(name, "1", MODEL_SHA256, sha256(data))
    error = (
        f"{name} version 1: refused: it holds types this project does not trust "
        f"({', '.join(UNTRUSTED)}), which no model it trains contains; it was made elsewhere or "
        "altered"
    )
    for command in DOWNLOADS:
        assert_refused(command, error, capsys)
    assert not marker.exists()


def test_evaluate_and_register_refuse_a_model_file_that_would_run_code(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stage in ("prepare", "train", "evaluate"):
        assert main([stage]) == 0, stage
    marker = workdir / "marker"
    malicious_model(MODEL_FILE, marker)
    for stage in ("evaluate", "register"):
        capsys.readouterr()
        assert main([stage]) == 1, stage
        error = capsys.readouterr().err
        assert error.startswith(f"ERROR: {MODEL_FILE}: refused: it holds types "), error
        assert error.count("\n") == 1
    assert not marker.exists()
    assert not MODEL_VERSION_FILE.exists()


def test_the_release_bento_holds_the_file_dvc_lock_records(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make bento EXPECT_DVC_LOCK=1`: the model this checkout trained, or nothing."""
    for stage in ("prepare", "train", "evaluate"):
        assert main([stage]) == 0, stage
    write_lock(seed=1, model_md5=md5(MODEL_FILE.read_bytes()))
    assert main(["register"]) == 0
    settings = load_params().mlflow

    # The version is this checkout's file: the bento gets it, byte for byte (`champion.store`
    # writes `model_file` as it is).
    shipped = from_checkout(load_registered(settings, CHALLENGER))
    assert shipped.model_file == MODEL_FILE.read_bytes()

    # Trained again from the same inputs (another file): the version it is, this run's file.
    assert main(["train"]) == 0
    write_lock(seed=1, model_md5=md5(MODEL_FILE.read_bytes()))
    assert main(["register"]) == 0
    shipped = from_checkout(load_registered(settings, CHALLENGER))
    assert shipped.version == "1"
    assert shipped.model_file == MODEL_FILE.read_bytes()
    registered_file = registry_file(MlflowClient(), settings.model_name, "1").read_bytes()
    assert shipped.model_file != registered_file

    # Other inputs (the shape of a rollback: the version is not this checkout's model): refused
    # with the flag, built from the registry's own checked file without it.
    write_lock(seed=2, model_md5=md5(MODEL_FILE.read_bytes()))
    capsys.readouterr()
    assert main(["bento", "--alias", CHALLENGER, "--expect-dvc-lock"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {settings.model_name} version 1 ('{CHALLENGER}') is not")
    assert "and it was trained from other code, data or parameters" in error
    registered = load_registered(settings, CHALLENGER)
    assert sha256(registered.model_file) == registered.tags[MODEL_SHA256]

    # A model file that is not the one dvc.lock records is refused before anything else.
    write_lock(seed=1)
    assert main(["bento", "--alias", CHALLENGER, "--expect-dvc-lock"]) == 1
    assert "that dvc.lock records; run `make evaluate` again" in capsys.readouterr().err
    Path("dvc.lock").unlink()
    with pytest.raises(ModelError, match=r"dvc\.lock: records no models/model\.skops"):
        from_checkout(registered)
