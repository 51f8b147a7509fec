"""The Dagster UI's own GraphQL, on the project's code location loaded in this process: what the
launchpad, the asset pages and the catalog ask the webserver, asked the same way in tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import DagsterInstance
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from photo_pipeline_tests.conftest import ROOT

LOCATION = "photo_pipeline"
REPOSITORY = "__repository__"


@contextmanager
def code_location(instance: DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    """photo_pipeline.definitions:defs, as the webserver and the daemon load it (in this process)."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="photo_pipeline.definitions",
            attribute="defs",
            working_directory=str(ROOT),
        ),
        location_name=LOCATION,
    )
    with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace:
        yield workspace


def query(workspace: WorkspaceProcessContext, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    result = execute_dagster_graphql(workspace.create_request_context(), text, variables or {})
    assert not result.errors, result.errors
    return result.data


def job_selector(job: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job}


def repository_selector() -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
