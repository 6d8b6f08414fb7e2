"""Fast tier: the rehearsal runs a repository's own composite action as GitHub's runner does.

The generated workflows set up every job with `.github/actions/setup`; the slow rehearsals
(tests/test_rehearsal.py) depend on tests/rehearsal.py running such an action faithfully. Here
a small repository's action exercises each part on its own: inputs and their defaults, `if:`
on its steps, `run:` steps, a `uses:` step through the same local equivalents as a job's,
GITHUB_ENV and outputs reaching the job, and what GitHub refuses.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from .rehearsal import Job, Rehearsal

ACTION = {
    "name": "Greet",
    "description": "Says hello, remembers it, and caches a folder",
    "inputs": {
        "greeting": {"description": "What to say", "default": "hello"},
        "shout": {"description": "'true' to say it again, louder", "default": "false"},
        "vars": {"description": "The repository's variables, toJSON(vars)", "default": "{}"},
    },
    "outputs": {
        "said": {"description": "What was said", "value": "${{ steps.say.outputs.said }}"},
    },
    "runs": {
        "using": "composite",
        "steps": [
            {
                "id": "say",
                "shell": "bash",
                "run": 'echo "said=$GREETING $WHO" >> "$GITHUB_OUTPUT"\n'
                'echo "GREETED=yes" >> "$GITHUB_ENV"\nmkdir -p kept',
                "env": {"GREETING": "${{ inputs.greeting }}"},
            },
            {"if": "inputs.shout == 'true'", "shell": "bash", "run": "echo LOUDER"},
            {
                "if": "fromJSON(inputs.vars).CACHE_KEY != ''",
                "uses": "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae",
                "with": {"path": "kept", "key": "${{ fromJSON(inputs.vars).CACHE_KEY }}"},
            },
            {"if": "failure()", "shell": "bash", "run": "echo cleaning up"},
        ],
    },
}
WORKFLOW = {
    "name": "greet",
    "on": {"workflow_dispatch": None},
    "jobs": {
        "greet": {
            "runs-on": "ubuntu-latest",
            "steps": [
                {
                    "id": "greet",
                    "uses": "$/.github/actions/greet",
                    "with": {"greeting": "hi", "vars": "${{ toJSON(vars) }}"},
                    "env": {"WHO": "team"},
                },
                {
                    "id": "after",
                    "run": 'echo "seen=$GREETED" >> "$GITHUB_OUTPUT"',
                },
            ],
            "outputs": {
                "said": "${{ steps.greet.outputs.said }}",
                "seen": "${{ steps.after.outputs.seen }}",
            },
        },
    },
}


def repository(tmp_path: Path, action: dict[str, object], prefix: str) -> Path:
    """A checkout holding the workflow and its action, which the workflow names with `prefix`
    (`$/`, the running commit, or `./`, the workspace: the same files here)."""
    project = tmp_path / "workspace"
    workflow = yaml.safe_load(yaml.safe_dump(WORKFLOW))
    workflow["jobs"]["greet"]["steps"][0]["uses"] = f"{prefix}.github/actions/greet"
    for path, content in {
        ".github/workflows/greet.yml": workflow,
        ".github/actions/greet/action.yml": action,
    }.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return project


def greet(
    tmp_path: Path, action: dict[str, object] = ACTION, prefix: str = "$/", **variables: str
) -> Job:
    project = repository(tmp_path, action, prefix)
    rehearsal = Rehearsal(project, "greet.yml", tmp_path, dict(os.environ), tmp_path / "caches")
    return rehearsal.run_job("greet", event_name="workflow_dispatch", variables=variables)


@pytest.mark.parametrize("prefix", ["$/", "./"])
def test_an_actions_inputs_conditions_environment_and_outputs_reach_the_job(
    tmp_path: Path, prefix: str
) -> None:
    job = greet(tmp_path, prefix=prefix)
    assert job.result == "success", [step.output for step in job.steps]
    action, after = job.steps
    assert (action.name, after.outcome) == (f"{prefix}.github/actions/greet", "success")
    # The default `shout` skips the second step; no CACHE_KEY variable, no cache.
    assert [step.outcome for step in action.steps] == ["success", "skipped", "skipped", "skipped"]
    # The step's `with:` over the input's default, the step's `env:` inside the action, the
    # action's GITHUB_ENV in the next step of the job, its output as the step's.
    assert job.outputs == {"said": "hi team", "seen": "yes"}
    assert not (tmp_path / "caches").exists()


def test_a_uses_step_inside_the_action_gets_the_same_local_equivalent(tmp_path: Path) -> None:
    job = greet(tmp_path, CACHE_KEY="greeting-1")
    assert job.result == "success", [step.output for step in job.steps]
    cache = job.steps[0].steps[2]
    assert (cache.name, cache.outcome, cache.output) == ("actions/cache", "success", "cache missed")
    assert (tmp_path / "caches" / "greeting-1").is_dir()  # saved when the job succeeded


def test_a_failing_step_fails_the_action_and_runs_only_what_asks_for_failure(
    tmp_path: Path,
) -> None:
    action = yaml.safe_load(yaml.safe_dump(ACTION))
    action["runs"]["steps"][0]["run"] = "exit 3"
    job = greet(tmp_path, action, CACHE_KEY="greeting-1")
    assert job.result == "failure"
    assert [step.outcome for step in job.steps] == ["failure", "skipped"]
    assert [step.outcome for step in job.steps[0].steps] == [
        "failure",
        "skipped",
        "skipped",
        "success",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("vars", "Unrecognized named-value: 'vars'"),
        ("shell", "needs `shell: bash`"),
        ("input", "no input named greeting"),
    ],
)
def test_what_github_refuses_in_an_action_fails_its_step(
    tmp_path: Path, change: str, message: str
) -> None:
    action = yaml.safe_load(yaml.safe_dump(ACTION))
    steps = action["runs"]["steps"]
    if change == "vars":  # an action cannot read the repository's variables itself
        steps[1]["if"] = "vars.LOUD == 'true'"
    elif change == "shell":  # an action's run: step names its shell
        del steps[0]["shell"]
    else:  # a `with:` the action does not declare
        del action["inputs"]["greeting"]
    job = greet(tmp_path, action)
    assert job.steps[0].outcome == "failure"
    assert message in job.steps[0].output
