"""What a database error means, in one line: the command line's messages and the API's error
answers both come from here.

SQLAlchemy's own text is never shown: it carries the statement (`[SQL: INSERT INTO photos …]`),
its parameters and a help link. The driver's first line (`permission denied for table photos`,
`connection to server at "db", port 5432 failed: Connection refused`) is for the operator only:
it names hosts and users, so an API answer carries the summary alone.

PostgreSQL errors are told apart by SQLSTATE (psycopg's `sqlstate`); failures to connect have
none, and SQLite has no codes, so those are told apart by the driver's message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

INIT_DB = "run `photo-pipeline init-db`"
GRANT_HINT = "`photo-pipeline doctor` lists the missing grants"

_DENIED_OBJECT = re.compile(r'permission denied for (table|relation|sequence|schema|database) "?([\w.$-]+)"?', re.IGNORECASE)
_UNDEFINED_OBJECT = re.compile(r'(?:relation|column) ("?[\w.$-]+"?(?: of relation "?[\w.$-]+"?)?) does not exist|no such (?:table|column): ([\w.$-]+)')
_WRITES = {"INSERT": "write to", "UPDATE": "write to", "DELETE": "delete from", "SELECT": "read", "TRUNCATE": "delete from"}


@dataclass(frozen=True)
class DatabaseFailure:
    """summary: what failed and what to do, safe for any audience. detail: the driver's first line,
    for the operator's terminal and the logs (it may name the host and the user)."""

    summary: str
    detail: str
    known: bool = True  # False: a kind this module does not recognise (the summary names only its class)

    def for_operator(self) -> str:
        """The summary, with the driver's own words when the kind is not one we recognise."""
        return self.summary if self.known or not self.detail else f"{self.summary}: {self.detail}"


def describe_database_error(exc: BaseException) -> DatabaseFailure:
    """One line for a SQLAlchemy (or DB-API) error: permission denied, read-only database,
    schema not migrated, unknown database or user, connection refused, timeouts."""
    original = getattr(exc, "orig", None) or exc
    detail = _first_line(original)
    sqlstate = str(getattr(original, "sqlstate", None) or getattr(original, "pgcode", None) or "")
    statement = str(getattr(exc, "statement", None) or "")
    for matches, summary in _KINDS:
        if matches(sqlstate, detail):
            return DatabaseFailure(summary(detail, statement), detail)
    return DatabaseFailure(f"the database failed ({type(original).__name__})", detail, known=False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else ""


def _has(*fragments: str) -> Callable[[str, str], bool]:
    lowered = tuple(fragment.lower() for fragment in fragments)
    return lambda _sqlstate, detail: any(fragment in detail.lower() for fragment in lowered)


def _code(*codes: str) -> Callable[[str, str], bool]:
    return lambda sqlstate, _detail: sqlstate in codes


def _either(*tests: Callable[[str, str], bool]) -> Callable[[str, str], bool]:
    return lambda sqlstate, detail: any(test(sqlstate, detail) for test in tests)


def _permission_denied(detail: str, statement: str) -> str:
    found = _DENIED_OBJECT.search(detail)
    verb = _WRITES.get(statement.split(maxsplit=1)[0].upper(), "use") if statement.strip() else "use"
    if found is None:
        return f"the database user cannot {verb} the photo tables: permission denied; {GRANT_HINT}"
    kind, name = found.group(1).lower(), found.group(2)
    if kind in ("schema", "database"):
        return f"the database user cannot use the {kind} {name}: permission denied"
    if kind == "sequence":
        return f"the database user cannot use the sequence {name}: permission denied (GRANT USAGE ON SEQUENCE)"
    return f"the database user cannot {verb} {name}: permission denied; {GRANT_HINT}"


def _not_migrated(detail: str, _statement: str) -> str:
    found = _UNDEFINED_OBJECT.search(detail)
    what = (found.group(1) or found.group(2)) if found else "a table or column"
    return f"the database schema is not migrated ({what} does not exist): {INIT_DB}"


def _fixed(text: str) -> Callable[[str, str], str]:
    return lambda _detail, _statement: text


# (does it match, what it means), most specific first.
_KINDS: tuple[tuple[Callable[[str, str], bool], Callable[[str, str], str]], ...] = (
    (_either(_code("42501"), _has("permission denied")), _permission_denied),
    (
        _either(_code("25006"), _has("read-only transaction", "readonly database")),
        _fixed("the database accepts no writes: it is read-only (a standby, a read-only file or transaction)"),
    ),
    (_either(_code("42P01", "42703"), _has("no such table", "no such column")), _not_migrated),
    (_code("57014"), _fixed("the database did not answer within the statement timeout")),
    (_code("53300"), _fixed("the database has no free connection (too many clients already)")),
    (
        _either(_code("3D000"), lambda _s, detail: bool(re.search(r'database "[^"]*" does not exist', detail))),
        _fixed("the database named in PHOTO_DATABASE_URL does not exist on that server: create it, then " + INIT_DB),
    ),
    (
        _either(_code("28P01", "28000"), _has("password authentication failed", "no pg_hba.conf entry"), lambda _s, d: bool(re.search(r'role "[^"]*" does not exist', d))),
        _fixed("the database refused the user or password of PHOTO_DATABASE_URL"),
    ),
    (_has("connection refused"), _fixed("cannot connect to the database: connection refused; is it running at the host and port of PHOTO_DATABASE_URL?")),
    (
        _has("failed to resolve host", "could not translate host name", "name or service not known", "nodename nor servname"),
        _fixed("cannot connect to the database: its host name does not resolve"),
    ),
    (_has("queuepool limit", "connection timed out, timeout"), _fixed("no free database connection in time: every pooled connection is busy")),
    (_has("timeout expired", "timed out"), _fixed("cannot connect to the database: no answer within the connect timeout")),
    (
        _has("server closed the connection", "terminating connection", "connection is closed", "consuming input failed"),
        _fixed("the database closed the connection (restarted, or a proxy cut it)"),
    ),
    (_has("database is locked"), _fixed("the SQLite database is locked by another writer")),
    (_has("unable to open database file"), _fixed("cannot open the SQLite file: its folder is missing or not accessible")),
)
