"""Shared fixtures: real servers, real databases, sample images made in code.

PostgreSQL is required: when it is unreachable the fixtures fail with the reason instead of
skipping, so CI cannot turn green without having tested the production database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config
from dagster import DagsterInstance
from moto.server import ThreadedMotoServer
from psycopg import sql
from sqlalchemy.engine import make_url

from photo_pipeline.photos.database import migrate
from photo_pipeline_tests.processes import stop_process_tree
from photo_pipeline_tests.s3rver_server import S3rverUnavailable, start_s3rver

# Admin connection used only to create and drop throw-away databases.
PG_ADMIN_DSN = os.environ.get("PHOTO_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# Fake credentials for moto; real S3 is never contacted.
S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _sqlalchemy_pg_url(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    password = info.get("password")
    auth = f"{user}:{password}" if password else str(user)
    return f"postgresql+psycopg://{auth}@{host}:{port}/{dbname}"


@dataclass
class PostgresServer:
    """Creates throw-away databases on the local PostgreSQL server."""

    created: list[str]
    # Databases kept for the whole session (templates), whichever test first asked for them.
    kept: list[str] = field(default_factory=list)

    def new_database(self, template: str | None = None) -> str:
        """A new, empty database; with `template`, a copy of that database (which nothing may be
        connected to: connections left to it are closed first)."""
        name = f"photo_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            if template is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            else:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (template,))
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        self.created.append(name)
        return _sqlalchemy_pg_url(name)

    def drop_created_after(self, count: int) -> None:
        """Drops the databases created after the first `count`, closing whatever connections are
        still open to them (WITH FORCE): pools a test left behind hold no server slot after it."""
        doomed, self.created = self.created[count:], self.created[:count]
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            for name in doomed:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def new_session_database(self) -> str:
        """A database that outlives the test that made it (dropped when the session ends): a
        session fixture may first be asked for in the middle of a test (getfixturevalue)."""
        url = self.new_database()
        self.kept.append(self.created.pop())
        return url

    def drop_all(self) -> None:
        self.created, self.kept = self.created + self.kept, []
        self.drop_created_after(0)


# The session's server once a test has asked for it (the per-test clean-up below needs it then only).
_postgres_servers: list[PostgresServer] = []


@pytest.fixture(autouse=True)
def _drop_the_tests_databases() -> Iterator[None]:
    """Each test's databases are dropped when it ends, not when the session does. With several xdist
    workers, pools left open by finished tests (idle connections of engines nobody disposed)
    would otherwise add up past PostgreSQL's max_connections (100 by default). Autouse and
    function-scoped, so it is set up after module- and session-scoped fixtures (whose databases
    it leaves alone) and torn down after the test's other fixtures (daemons stopped first)."""
    before = len(_postgres_servers[0].created) if _postgres_servers else 0
    yield
    if _postgres_servers:
        _postgres_servers[0].drop_created_after(before)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for these tests and is unreachable at {PG_ADMIN_DSN!r}: {exc}. "
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )
    server = PostgresServer(created=[])
    _postgres_servers.append(server)
    yield server
    _postgres_servers.remove(server)
    server.drop_all()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for one test."""
    return postgres_server.new_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'photos.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind the repository supports."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("sqlite_url")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"photos-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, spoken to over real HTTP."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(endpoint_url=f"http://{host}:{port}")
    server.stop()


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def s3rver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """s3rver (pinned in photo_pipeline_tests/s3rver/) on a free loopback port: unlike moto it
    checks SigV4 signatures - of headers and of presigned URLs, the signed Content-Type and
    Content-Length included - their expiry, and each bucket's CORS rule. It does not honour
    If-None-Match on PUT (moto does). The suite's test credentials are registered with it.
    scripts/ensure-s3rver.sh installs it into .cache/ (make test runs it; so does this fixture,
    under a lock, so a single test run from a fresh clone works too)."""
    data = tmp_path_factory.mktemp("s3rver")
    with (data.parent / f"{data.name}.log").open("wb") as log:
        try:
            process, port = start_s3rver(
                data, S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"], S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], stderr=log
            )
        except S3rverUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield S3Server(endpoint_url=f"http://127.0.0.1:{port}")
        finally:
            stop_process_tree(process)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """boto3's own environment variables pointed at the moto server (as production sets them)."""
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: S3Server) -> str:
    return s3_env.new_bucket()


# The venv's scripts (dagster-daemon, photo-pipeline) beside the interpreter running the tests.
BIN = Path(sys.executable).parent


def dagster_pg_environment(url: str) -> dict[str, str]:
    """The variables the production dagster.yaml reads its PostgreSQL database from."""
    parsed = make_url(url)
    return {
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_USER": parsed.username or "postgres",
        "DAGSTER_PG_PASSWORD": parsed.password or "unused-with-trust-auth",
        "DAGSTER_PG_DB": parsed.database or "",
    }


@pytest.fixture(scope="session")
def dagster_database_template(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a database holding the schema Dagster creates on an instance's first use, made
    once per worker through the repository's production dagster.yaml: each test's Dagster database
    is a copy of it (CREATE DATABASE ... TEMPLATE, about 0.1 s of CPU) rather than an empty one on
    which Dagster creates its tables again (0.4-0.6 s of CPU, the server's included)."""
    url = postgres_server.new_session_database()
    home = tmp_path_factory.mktemp("dagster_template_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in dagster_pg_environment(url).items():
            patch.setenv(name, value)
        with DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)  # the storages are built, their tables created
    return make_url(url).database or ""


@pytest.fixture
def dagster_instance(
    postgres_server: PostgresServer, dagster_database_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    """A Dagster instance configured by the repository's own production dagster.yaml, on a
    PostgreSQL database of its own (so the file itself is tested too)."""
    url = postgres_server.new_database(template=dagster_database_template)
    for name, value in dagster_pg_environment(url).items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def instance(dagster_instance: DagsterInstance) -> DagsterInstance:
    """Short name for the Dagster instance in tests that pass it around a lot."""
    return dagster_instance


@pytest.fixture
def photo_db(postgres_url: str) -> str:
    """A fresh PostgreSQL database migrated to the current photo table schema."""
    migrate(postgres_url)
    return postgres_url


def _psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def select_only_url(photo_db: str) -> Iterator[str]:
    """A migrated PostgreSQL database, as a role of its own that may only SELECT there: the
    database user that reaches every table and writes none (issue 18)."""
    role = f"photo_reader_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_dsn(photo_db), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    yield make_url(photo_db).set(username=role, password=None).render_as_string(hide_password=False)
    with psycopg.connect(_psycopg_dsn(photo_db), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# -- the daemon, out of process, on PostgreSQL and the S3 server (test_daemon, test_crash_recovery)


@pytest.fixture
def pipeline_env(
    postgres_server: PostgresServer, dagster_database_template: str, s3_server: S3Server, tmp_path: Path
) -> dict[str, str]:
    photo_db = postgres_server.new_database()
    migrate(photo_db)
    dagster_db = postgres_server.new_database(template=dagster_database_template)
    bucket = s3_server.new_bucket()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    env.update(S3_TEST_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
            "PHOTO_DATABASE_URL": photo_db,
            "PHOTO_BUCKET": bucket,
            "PHOTO_PIPELINE_HOME": str(tmp_path / "home"),
            "PHOTO_SENSOR_INTERVAL_SECONDS": "5",
            "PHOTO_RECONCILE_CRON": "* * * * *",
            "PHOTO_PREVIEW_SIZE": "1024",
            "DAGSTER_HOME": str(dagster_home),
            **dagster_pg_environment(dagster_db),
        }
    )
    return env


@pytest.fixture
def daemon(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=pipeline_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield process
    stop_process_tree(process)
    log.close()



# -- a real headless browser: Debian's Chromium driven by Playwright (browser tests)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for a test module. Missing Chromium fails the test (make test installs it
    with scripts/ensure-chromium.sh); it never skips. Per module, not per session: Playwright's
    sync API keeps an asyncio loop running on the main thread while it lives, and code that calls
    asyncio.run (Dagster's freshness daemon, for one) refuses to run under it."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM}: run scripts/ensure-chromium.sh"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


# -- side by side: how `make test` spreads the suite over pytest-xdist workers (--dist loadgroup)

# Modules (or single tests) that take longest, slowest first (from `make test`'s --durations):
# they start first, so that the many short tests fill the other workers around them instead of
# one of these starting last and running alone.
SLOW_FIRST = (
    "photo_pipeline_tests/ui/test_browser_smoke.py",  # one unit: the demo and the UI, built once
    "photo_pipeline_tests/defs/test_daemon_trash.py",
    "photo_pipeline_tests/defs/test_daemon.py",
    "photo_pipeline_tests/services/test_crash_recovery.py",
    # Long but bound by nothing but the CPU: after the daemons, which wait on deadlines.
    "photo_pipeline_tests/reconcile/test_scale.py",
    "photo_pipeline_tests/cli/test_commands.py",
    "photo_pipeline_tests/cli/test_ui.py",
    "photo_pipeline_tests/deploy/test_celery.py",
    "photo_pipeline_tests/api/test_uploader_page.py",
    "photo_pipeline_tests/photos/test_leases.py",
    "photo_pipeline_tests/services/test_reruns.py",
    "photo_pipeline_tests/api/test_api.py",
    "photo_pipeline_tests/services/test_limits.py",
    "photo_pipeline_tests/defs/test_trash_flow.py",
    "photo_pipeline_tests/defs/test_dg.py",
)
# Modules whose tests all run on one worker, one after the other: the lease tests time claims
# against a heartbeat (two of them at once on this machine's two cores would starve each other's
# render threads), and the uploader page's tests share its servers, browser and daemon.
ONE_WORKER_MODULES = (
    "photo_pipeline_tests/photos/test_leases.py",
    "photo_pipeline_tests/api/test_uploader_page.py",
)


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture built once per module (a browser, a UI, a server): tests
    sharing it go to one worker, or each worker would build it again."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definitions[-1].scope in ("module", "class", "package")
        for definitions in info.name2fixturedefs.values()
        if definitions
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _module_of(item) in ONE_WORKER_MODULES or _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(_module_of(item)))

    def rank(item: pytest.Item) -> int:
        module = _module_of(item)
        return SLOW_FIRST.index(module) if module in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
