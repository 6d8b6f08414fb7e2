"""Who may do what on a shared MLflow server with basic auth: the workflows' two users.

- `mlflow-users` (run by the server's admin): create, or give new passwords to, two users of
  the project's experiment and registered model: `<model>-reader` (READ), which pull requests
  use, and `<model>-release` (EDIT), which only the `production` environment holds.
- `readable_only()`: what `ci remotes --read-only` checks in a pull request's job: the user
  it was given can read the model but not change it.
"""

import argparse
import os
import secrets
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response

from ..core.config import MlflowParams, embedded_store, load_params, tracking_uri
from ..core.errors import RegistryError
from ..release.registry import registry_errors

# Each user: the GitHub environment whose secrets hold it, and what it may do.
ROLES = {"reader": ("mlflow-read", "READ"), "release": ("production", "EDIT")}
WRITES = {"EDIT", "MANAGE"}
USERS = "/api/2.0/mlflow/users"
PERMISSIONS = "/api/3.0/mlflow/users/permissions"


@dataclass(frozen=True)
class User:
    name: str
    password: str
    environment: str
    permission: str


class Auth:
    """MLflow's basic-auth REST API: what mlflow.server.auth.client calls, without importing
    MLflow's server (Flask, FastAPI) into a command that only makes a few requests."""

    def __init__(self, params: MlflowParams) -> None:
        uri = tracking_uri(params)
        if embedded_store(uri) is not None or not uri.startswith(("http://", "https://")):
            raise RegistryError(
                f"{uri}: users live on a shared MLflow server with basic auth; set "
                "MLFLOW_TRACKING_URI to it (see `make mlflow-server`)"
            )
        self.host = get_default_host_creds(uri)  # type: ignore[no-untyped-call]

    def call(self, path: str, method: str = "GET", **fields: str) -> dict[str, Any]:
        sent = {"params": fields} if method == "GET" else {"json": fields}
        answer = http_request(self.host, path, method, **sent)  # type: ignore[no-untyped-call]
        answer = verify_rest_response(answer, path)
        return answer.json() if answer.content else {}

    def is_admin(self, user: str) -> bool:
        return bool(self.call(f"{USERS}/get", username=user)["user"]["is_admin"])

    def permission(self, user: str, kind: str, resource: str) -> str:
        on = {"username": user, "resource_type": kind, "resource_id": resource}
        return str(self.call(f"{PERMISSIONS}/get", **on)["permission"])

    def grant(self, user: str, kind: str, resource: str, permission: str) -> None:
        """Give `user` exactly `permission` on the resource, whatever it had before."""
        on = {"username": user, "resource_type": kind, "resource_id": resource}
        try:
            self.call(f"{PERMISSIONS}/grant", "POST", **on, permission=permission)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            self.call(f"{PERMISSIONS}/revoke", "POST", **on)
            self.call(f"{PERMISSIONS}/grant", "POST", **on, permission=permission)

    def create_or_renew(self, user: User) -> None:
        try:
            self.call(f"{USERS}/get", username=user.name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.call(f"{USERS}/create", "POST", username=user.name, password=user.password)
        else:
            self.call(
                f"{USERS}/update-password", "PATCH", username=user.name, password=user.password
            )


def create_users(params: MlflowParams) -> list[User]:
    """The reader and the release user, each with a new password and its permissions."""
    auth = Auth(params)
    admin = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    with registry_errors(params):
        if not admin or not auth.is_admin(admin):
            raise RegistryError(
                "`mlflow-users` runs as the server's admin: set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD to the admin, not {admin or 'nobody'!r}"
            )
        # Both exist before anyone gets a permission on them.
        registry = MlflowClient(tracking_uri=tracking_uri(params))
        found = registry.get_experiment_by_name(params.experiment)
        experiment = found.experiment_id if found else registry.create_experiment(params.experiment)
        if not registry.search_registered_models(f"name = '{params.model_name}'"):
            registry.create_registered_model(params.model_name)
        users = []
        for role, (environment, permission) in ROLES.items():
            password = secrets.token_urlsafe(24)
            user = User(f"{params.model_name}-{role}", password, environment, permission)
            auth.create_or_renew(user)
            auth.grant(user.name, "experiment", experiment, permission)
            auth.grant(user.name, "registered_model", params.model_name, permission)
            users.append(user)
    return users


def readable_only(params: MlflowParams) -> str:
    """Who this job is on MLflow, in a few words, once checked it cannot change the registry.

    Raises RegistryError when the user is an admin or may edit the registered model.
    """
    uri = tracking_uri(params)
    if embedded_store(uri) is not None or not uri.startswith(("http://", "https://")):
        return "the embedded store (nothing shared to protect)"
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user:
        return "no user (a server without basic auth lets anyone change it)"
    auth = Auth(params)
    with registry_errors(params):
        admin = auth.is_admin(user)
        permission = auth.permission(user, "registered_model", params.model_name)
    if admin or permission in WRITES:
        what = "is an admin" if admin else f"has {permission} on the model"
        raise RegistryError(
            f"MLflow user {user!r} {what}, and a pull request runs its own code with it: give "
            f"this job the read-only user {params.model_name}-reader (`make mlflow-users`; the "
            "`mlflow-read` environment's secrets) and keep the writer in `production`"
        )
    return f"user `{user}`, read-only ({permission})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mlflow-users", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.parse_args(argv)
    params = load_params().mlflow
    users = create_users(params)
    print(f"MLflow users for {params.model_name!r} (new passwords; the old ones no longer work):")
    for user in users:
        print(f"  {user.name}: {user.permission}, for the GitHub environment {user.environment!r}")
    print(
        "\nStore each as its environment's secrets MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, never as repository secrets:"
    )
    for user in users:
        secret = f"  gh secret set MLFLOW_TRACKING_%s --env {user.environment} --body %s"
        print(secret % ("USERNAME", user.name))
        print(secret % ("PASSWORD", f"'{user.password}'"))
    return 0
