# The MLflow server and the object store of compose.yaml: MLflow's basic-auth app, the PostgreSQL
# driver, boto3 and moto's S3 server at the versions uv.lock pins (the `server` dependency
# group), run by a user without privileges.
# Base images by digest; Dependabot (.github/dependabot.yml) proposes new digests.
{%- import "images.j2" as images %}
FROM {{ images.uv }} AS uv

FROM {{ images.python[cookiecutter.python_version] }}

COPY --from=uv /uv /usr/local/bin/uv
RUN useradd --system --create-home mlflow

WORKDIR /opt/mlflow
COPY pyproject.toml uv.lock ./
ENV UV_PROJECT_ENVIRONMENT=/opt/mlflow/.venv UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1
RUN uv sync --locked --only-group server --no-install-project
ENV PATH=/opt/mlflow/.venv/bin:$PATH

USER mlflow
EXPOSE 5000
