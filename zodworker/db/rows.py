"""Where rows come from and what errors look like: the one row factory for jobs, error
translation, and the helpers every statement in ``zodworker.db`` goes through.

* :func:`job_rows` is the only code that turns a row into a :class:`~zodworker.job.Job`. Every
  job-returning query in ``sql/queries`` selects the columns of ``_private_jobs`` in table
  order, then the task identifier and the queue name (see :data:`JOB_COLUMNS`).
* :func:`translate_errors` turns psycopg's exceptions into the package's (keeping the
  driver's as ``__cause__``). :func:`fetch`, :func:`fetch_sync` and :func:`borrow` apply it to
  every statement and every connection they hand out, so no query escapes it.
* A *target* is where a statement runs: a connection (the caller's transaction; nothing is
  committed for them) or a pool (a connection is borrowed and committed on return).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, TypeAlias, overload

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.rows import RowFactory, RowMaker, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ..errors import ConfigError, DatabaseError, JobKeyModeError, JobSpecError
from ..job import Job

__all__ = [
    "JOB_COLUMNS",
    "AsyncConn",
    "AsyncTarget",
    "LazyRows",
    "Params",
    "SyncConn",
    "SyncTarget",
    "borrow",
    "borrow_sync",
    "fetch",
    "fetch_lazy",
    "fetch_lazy_sync",
    "fetch_sync",
    "int_array",
    "is_connection_error",
    "job_rows",
    "translate_errors",
]

AsyncConn: TypeAlias = "psycopg.AsyncConnection[Any]"
SyncConn: TypeAlias = "psycopg.Connection[Any]"
AsyncTarget: TypeAlias = "psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]"
"""Where an async statement runs: your connection (your transaction) or a pool."""
SyncTarget: TypeAlias = "psycopg.Connection[Any] | ConnectionPool[Any]"
"""Where a sync statement runs: your connection (your transaction) or a pool."""
Params: TypeAlias = "Sequence[object] | Mapping[str, object] | None"

JOB_COLUMNS: Final = (
    "id",
    "job_queue_id",
    "task_id",
    "payload",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
    "is_available",
    "task_identifier",
    "queue_name",
)
"""The layout of every job-returning query: ``_private_jobs``' columns in table order, then
the task identifier (may be null: filled from the caller's id -> name map, or resolved
afterwards) and the queue name."""

# Which argument a failed CHECK constraint is about, by constraint name.
_CONSTRAINT_FIELDS: Final = {
    "jobs_key_check": "job_key",
    "jobs_max_attempts_check": "max_attempts",
    "tasks_identifier_check": "identifier",
    "job_queues_queue_name_check": "queue_name",
}
# undefined schema / table / function: the schema was probably never migrated
_NOT_INSTALLED: Final = frozenset({"3F000", "42P01", "42883"})
_NO_NAMES: Final[Mapping[int, str]] = {}
# duplicate prepared statement, unknown prepared statement (psycopg names them _pg3_<n>)
_PREPARED_CLASH: Final = frozenset({"42P05", "26000"})
# admin shutdown, crash shutdown, cannot connect now, idle session timeout
_SERVER_GONE: Final = frozenset({"57P01", "57P02", "57P03", "57P05"})
_TUPLES_OK: Final = psycopg.pq.ExecStatus.TUPLES_OK
_PAYLOAD, _BYTEA_OID = 3, 17  # the payload's column in a job row (JOB_COLUMNS); bytea's oid


def job_rows(
    task_names: Mapping[int, str] | None = None,
    *,
    payload_json: Callable[[bytes], Any] | None = None,
) -> RowFactory[Job]:
    """The row factory for job-returning queries (layout :data:`JOB_COLUMNS`).

    ``task_names`` (task id -> identifier) fills in identifiers a query leaves null; the
    worker's fetch uses it instead of joining the tasks table for every job.
    ``payload_json``: the payload column comes as its JSON bytes (:func:`fetch_lazy` with
    ``raw_payload=True``) and is decoded with it here.
    """
    names = _NO_NAMES if task_names is None else task_names
    decode = _as_is if payload_json is None else payload_json

    def make(v: Sequence[Any]) -> Job:
        # Positional, in Job's field order (keywords cost ten times as much per row):
        # id, task_identifier, queue_name, payload, priority, run_at, attempts,
        # max_attempts, last_error, created_at, updated_at, key, locked_at, locked_by,
        # revision, flags, task_id, job_queue_id, is_available.
        return Job(
            v[0], v[17] or names.get(v[2], ""), v[18], decode(v[3]), v[4], v[5], v[6], v[7],
            v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[2], v[1], v[16],
        )  # fmt: skip

    def factory(cursor: Any) -> RowMaker[Job]:
        return make

    return factory


def _as_is(value: Any) -> Any:
    return value


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise psycopg errors as zodworker errors, keeping the original as ``__cause__``."""
    try:
        yield
    except psycopg.Error as exc:
        raise _translated(exc) from exc


def _translated(exc: psycopg.Error) -> Exception:
    sqlstate = exc.sqlstate
    diag = exc.diag
    if sqlstate in _PREPARED_CLASH and "_pg3_" in (diag.message_primary or ""):
        return ConfigError(
            "use_prepared_statements",
            f"the server lost or mixed up a prepared statement ({diag.message_primary}): "
            "something between zodworker and PostgreSQL does not keep session state, most "
            "likely PgBouncer in transaction pooling mode. Pass use_prepared_statements=False "
            "(zodworker run --no-prepared-statements), and a direct or session-pooled "
            "listen_connection (--listen-connection URL) or poll_only=True (--poll-only)",
        )
    if sqlstate == "GWBKM":
        return JobKeyModeError(str(exc), sqlstate)
    if sqlstate == "23514" and diag.constraint_name in _CONSTRAINT_FIELDS:
        field = _CONSTRAINT_FIELDS[diag.constraint_name]
        return JobSpecError(field, f"rejected by the database: {diag.message_primary}")
    if sqlstate == "22003":  # numeric value out of range (smallint casts)
        return JobSpecError("priority/max_attempts", f"out of range: {diag.message_primary}")
    message = str(exc).strip() or type(exc).__name__
    if sqlstate in _NOT_INSTALLED:
        message += (
            " (is the schema installed? run `zodworker migrate`, or `await migrate(conn)` /"
            " `await client.initialize()` first)"
        )
    return DatabaseError(message, sqlstate)


def int_array(values: Iterable[int]) -> str:
    """Integers as a PostgreSQL array literal (``{1,2,3}``) for a parameter the statement
    casts (``%(ids)s::bigint[]``): ~0.1 us an id, psycopg's list adapter ~0.7 us."""
    return "{" + ",".join(map(str, values)) + "}"


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was lost or refused (a server restart or crash, a
    cut network, a pool that could not connect) rather than a problem with the statement."""
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__
    if isinstance(cause, PoolTimeout):
        return True
    sqlstate = exc.sqlstate or ""
    return (
        sqlstate.startswith("08")
        or sqlstate in _SERVER_GONE
        or (not sqlstate and isinstance(cause, psycopg.OperationalError))
    )


@asynccontextmanager
async def borrow(target: AsyncTarget) -> AsyncIterator[AsyncConn]:
    """The connection to run on: ``target`` itself, or one borrowed from the pool ``target``
    (committed when the block ends without error, rolled back otherwise)."""
    if isinstance(target, AsyncConnectionPool):
        with translate_errors():
            async with target.connection() as conn:
                yield conn
    else:
        yield target


@contextmanager
def borrow_sync(target: SyncTarget) -> Iterator[SyncConn]:
    """:func:`borrow` for synchronous targets."""
    if isinstance(target, ConnectionPool):
        with translate_errors(), target.connection() as conn:
            yield conn
    else:
        yield target


async def fetch(
    conn: AsyncConn,
    query: bytes,
    params: Params = None,
    *,
    rows: RowFactory[Any] = tuple_row,
    binary: bool = False,
    json_loads: Callable[[bytes | str], Any] | None = None,
    prepare: bool | None = None,
) -> list[Any]:
    """Run one statement on ``conn``; return its rows (``[]`` when it returns none).

    ``json_loads`` decodes JSON columns of this cursor only (the caller's connection keeps
    its own loader); ``prepare=False`` keeps multi-statement text from being prepared.
    """
    with translate_errors():
        async with conn.cursor(row_factory=rows, binary=binary) as cur:
            if json_loads is not None:
                set_json_loads(json_loads, cur)
            await cur.execute(query, params, prepare=prepare)
            return await cur.fetchall() if _row_set(cur) is not None else []


async def run_pipelined(conn: AsyncConn, statements: Sequence[tuple[bytes, Params]]) -> None:
    """Run ``statements`` in order in one round trip (pipeline mode: one implicit
    transaction); their rows are discarded."""
    with translate_errors():
        async with conn.pipeline():
            for query, params in statements:
                await conn.execute(query, params)


def fetch_sync(
    conn: SyncConn,
    query: bytes,
    params: Params = None,
    *,
    rows: RowFactory[Any] = tuple_row,
    binary: bool = False,
    json_loads: Callable[[bytes | str], Any] | None = None,
    prepare: bool | None = None,
) -> list[Any]:
    """:func:`fetch` for synchronous connections."""
    with translate_errors(), _sync_cursor(conn, rows, binary) as cur:
        if json_loads is not None:
            set_json_loads(json_loads, cur)
        cur.execute(query, params, prepare=prepare)
        return cur.fetchall() if _row_set(cur) is not None else []


def _sync_cursor(conn: SyncConn, rows: RowFactory[Any], binary: bool) -> psycopg.Cursor[Any]:
    """A server-side-binding cursor on ``conn`` whatever its ``cursor_factory`` (Django's
    connections make client-side cursors, which cannot return binary rows)."""
    cur = psycopg.Cursor(conn, row_factory=rows)
    if binary:
        cur.format = pq.Format.BINARY
    return cur


def _row_set(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> pq.abc.PGresult | None:
    """The statement's result when it is a set of rows (cheaper than building
    ``description``)."""
    result = cur.pgresult
    return result if result is not None and result.status == _TUPLES_OK else None


class LazyRows(Sequence[Any]):
    """The rows of one statement's result, each decoded when first read: the local queue
    reads a fetched job when a slot takes it, and a batch add returns its jobs without
    decoding a thousand rows nobody may look at. ``lease`` is the ``locked_by`` every row
    of a fetch was claimed under ("" elsewhere). Compares equal to a list of the same rows.
    """

    __slots__ = ("_finish", "_make", "_order", "_rows", "_tx", "lease")

    def __init__(self, tx: Any, count: int, make: RowMaker[Any], lease: str = "") -> None:
        self._tx = tx
        self._make = make
        self._rows: list[Any] = [None] * count
        self.lease = lease
        self._order: list[int] | None = None
        self._finish: Callable[[int, Any], None] | None = None

    def in_id_order(self, finish: Callable[[int, Any], None] | None = None) -> LazyRows:
        """These rows ordered by their first column (a bigint id, read raw), each passed to
        ``finish(position, row)`` once when decoded; returns self. Costs one pass over the
        ids when they come ordered already, as a statement's RETURNING usually gives them."""
        value = self._tx.pgresult.get_value if self._tx is not None else None
        if value is not None:
            ids = [int.from_bytes(value(i, 0), "big", signed=True) for i in range(len(self))]
            if ids != sorted(ids):
                self._order = sorted(range(len(ids)), key=ids.__getitem__)
        self._finish = finish
        return self

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._rows)))]
        row = self._rows[index]
        if row is None:
            if index < 0:
                index += len(self._rows)
            source = index if self._order is None else self._order[index]
            row = self._tx.load_row(source, self._make)
            if self._finish is not None:
                self._finish(index, row)
            self._rows[index] = row
        return row

    def nulls(self, column: int) -> list[bool]:
        """Whether ``column`` is NULL, for each row in the statement's order (not
        :meth:`in_id_order`'s), read without decoding any row."""
        if self._tx is None:
            return []
        value = self._tx.pgresult.get_value
        return [value(i, column) is None for i in range(len(self._rows))]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyRows | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


def _lazy(cur: Any, make: RowMaker[Any], lease: str, raw_payload: bool = False) -> LazyRows:
    result = _row_set(cur)
    if result is None:
        return LazyRows(None, 0, make, lease)
    tx = Transformer.from_context(cur)
    tx.set_pgresult(result, format=pq.Format.BINARY)
    if raw_payload:  # a job row's payload as JSON bytes, by the C bytea loader
        types = [result.ftype(column) for column in range(result.nfields)]
        types[_PAYLOAD] = _BYTEA_OID
        tx.set_loader_types(types, pq.Format.BINARY)
    return LazyRows(tx, result.ntuples, make, lease)


async def fetch_lazy(
    conn: AsyncConn,
    query: bytes,
    params: Params,
    rows: RowFactory[Any],
    lease: str = "",
    *,
    json_loads: Callable[[bytes | str], Any] | None = None,
    raw_payload: bool = False,
) -> LazyRows:
    """Run a row-returning statement (binary); its rows are decoded when read
    (:class:`LazyRows`). ``json_loads`` decodes this cursor's JSON columns; ``raw_payload``
    leaves a job's payload as JSON bytes for :func:`job_rows` ``payload_json`` (cheaper
    than psycopg's JSON loader, which is Python)."""
    with translate_errors():
        async with conn.cursor(row_factory=rows, binary=True) as cur:
            if json_loads is not None:
                set_json_loads(json_loads, cur)
            await cur.execute(query, params)
            return _lazy(cur, rows(cur), lease, raw_payload)  # type: ignore[arg-type]


def fetch_lazy_sync(
    conn: SyncConn,
    query: bytes,
    params: Params,
    rows: RowFactory[Any],
    *,
    json_loads: Callable[[bytes | str], Any] | None = None,
) -> LazyRows:
    """:func:`fetch_lazy` for synchronous connections."""
    with translate_errors(), _sync_cursor(conn, rows, True) as cur:
        if json_loads is not None:
            set_json_loads(json_loads, cur)
        cur.execute(query, params)
        return _lazy(cur, rows(cur), "")
