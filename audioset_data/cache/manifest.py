"""The download manifest: one SQLite row per segment, the source of truth for resume.

Each segment has a status (``pending``, ``ok``, ``failed``), the failure reason, whether that
failure is permanent, the number of attempts, and where its audio lives (file and row). The
manifest also lists every HDF5 file it references with its row count, so a reader can check
that nothing is missing. SQLite transactions make every update atomic: a process killed at any
moment leaves the last committed state, never a half-written one.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audioset_data.config import PathLike
from audioset_data.errors import CacheError
from audioset_data.fileio import disk_full, is_disk_full

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: File name of a cache folder's manifest (a job of an array writes ``manifest.part-I-of-N``).
MANIFEST_NAME = "manifest.sqlite"

STATUSES = ("pending", "ok", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clips (
    key TEXT PRIMARY KEY,
    ytid TEXT NOT NULL,
    start REAL NOT NULL,
    end_ REAL NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ok', 'failed')),
    reason TEXT,
    permanent INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    file TEXT,
    row INTEGER,
    length INTEGER,
    updated REAL
);
CREATE INDEX IF NOT EXISTS clips_status ON clips (status);
CREATE INDEX IF NOT EXISTS clips_file ON clips (file);
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('batch', 'shard')),
    n_rows INTEGER NOT NULL,
    created REAL NOT NULL
);
"""

#: Statements run on every writable open after the schema: the ``size`` column of files (added
#: after the first release) and the generation counter that readers key their index caches on.
#: Any statement that moves a clip into or out of the cached set bumps ``meta.generation``.
_UPGRADE = """
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
CREATE TRIGGER IF NOT EXISTS clips_generation_update
AFTER UPDATE OF status, file, row ON clips
WHEN OLD.status = 'ok' OR NEW.status = 'ok'
BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER IF NOT EXISTS clips_generation_insert AFTER INSERT ON clips
WHEN NEW.status = 'ok'
BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER IF NOT EXISTS clips_generation_delete AFTER DELETE ON clips
WHEN OLD.status = 'ok'
BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
"""

#: File names a manifest may reference: plain names in the cache folder, never a path.
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.h5")


def check_file_name(name: object, manifest: PathLike | None = None) -> str:
    """Return ``name`` if it is a plain cache file name, else raise :class:`CacheError`.

    File names come from the manifest, which may be damaged or crafted: one is joined to the
    cache folder only after this check, so it can never escape the folder.
    """
    if not isinstance(name, str) or not FILE_NAME_PATTERN.fullmatch(name):
        where = f" in manifest {str(manifest)!r}" if manifest else ""
        raise CacheError(f"file name {name!r}{where} is not a plain cache file name (*.h5)")
    return name


#: Meta key of the fingerprint of the registered segment list (see ``add_segments``).
_FINGERPRINT = "segments_fingerprint"
#: Triggers that forget the fingerprint when anything adds, removes or changes a segment row.
_LIST_TRIGGERS = ("clips_list_insert", "clips_list_update", "clips_list_delete")
_LIST_TRIGGER_SQL = (
    "CREATE TRIGGER IF NOT EXISTS clips_list_insert AFTER INSERT ON clips "
    "BEGIN DELETE FROM meta WHERE key = 'segments_fingerprint'; END",
    "CREATE TRIGGER IF NOT EXISTS clips_list_update "
    "AFTER UPDATE OF key, ytid, start, end_, labels ON clips "
    "BEGIN DELETE FROM meta WHERE key = 'segments_fingerprint'; END",
    "CREATE TRIGGER IF NOT EXISTS clips_list_delete AFTER DELETE ON clips "
    "BEGIN DELETE FROM meta WHERE key = 'segments_fingerprint'; END",
)


def clip_key(ytid: str, start: float) -> str:
    """Stable key of a segment: the id and the start time in milliseconds."""
    return f"{ytid}_{round(float(start) * 1000)}"


@dataclass(frozen=True)
class Placement:
    """Where one cached clip lives: its key, file, row and true length in samples."""

    key: str
    file: str
    row: int
    length: int


class Manifest:
    """A SQLite manifest of one cache folder.

    Open with :meth:`open`; close with :meth:`close` or use it as a context manager.
    """

    def __init__(self, path: PathLike, conn: sqlite3.Connection):
        self.path = Path(path)
        self._conn = conn

    @classmethod
    def open(cls, path: PathLike, *, create: bool = True, readonly: bool = False) -> Manifest:
        """Open (and create if asked) the manifest at ``path``.

        ``readonly`` opens without writing anything, so a finished cache on a read-only mount
        or owned by another user can be read.
        """
        path = Path(path)
        if (readonly or not create) and not path.is_file():
            raise CacheError(f"manifest {str(path)!r} does not exist")
        try:
            if readonly:
                conn = cls._connect_readonly(path)
            else:
                conn = sqlite3.connect(path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed batch survives a power cut before its old files are deleted
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
                cls._upgrade(conn)
            row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None and not readonly:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row is None or int(row[0]) != SCHEMA_VERSION:
                raise CacheError(
                    f"manifest {str(path)!r} has schema {row and row[0]}, this version reads "
                    f"{SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"manifest {str(path)!r} cannot be read: {exc}") from exc
        return cls(path, conn)

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(files)")}
        if "size" not in columns:
            conn.execute("ALTER TABLE files ADD COLUMN size INTEGER")
        conn.executescript(_UPGRADE)

    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        uri = path.resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # a read-only folder cannot hold WAL's shared-memory file: read the file as is
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def finish(self) -> None:
        """Fold the write-ahead log into the database file (the cache is then one plain file
        per manifest, readable from read-only media and safe to copy). While another
        connection (a reader) has the database open the file stays in WAL mode, but
        everything committed is still copied into it."""
        try:
            self._conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError as exc:
            logger.debug("manifest %s stays in WAL mode: %s", self.path, exc)
            self.checkpoint(truncate=True)

    def checkpoint(self, truncate: bool = False) -> bool:
        """Copy what the write-ahead log holds into the database file, so that file alone
        (``manifest.sqlite`` without ``-wal``) has every committed change; ``truncate`` also
        empties the log. Returns False when a reader kept part of the log from being copied."""
        mode = "TRUNCATE" if truncate else "PASSIVE"
        try:
            busy, _, _ = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.OperationalError as exc:
            logger.debug("manifest %s: checkpoint skipped: %s", self.path, exc)
            return False
        return not busy

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[Manifest]:
        """Reads inside see one consistent state, even while a writer commits."""
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back by itself
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise disk_full(self.path.parent, what=f"updating {self.path.name}") from exc

    # -- settings ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A stored setting (sample rate, format, label index), or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def check_or_set_meta(self, values: dict[str, str]) -> None:
        """Store settings on first use; on later use refuse settings that differ."""
        with self.transaction() as conn:
            for key, value in values.items():
                old = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
                if old is None:
                    conn.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
                elif old[0] != value:
                    raise CacheError(
                        f"cache {str(self.path.parent)!r} was made with {key}={old[0]}, "
                        f"not {value}; use another root or the same setting"
                    )

    # -- segments ---------------------------------------------------------------------------
    def add_segments(
        self, rows: Iterable[tuple[str, str, float, float, str]], fingerprint: str | None = None
    ) -> tuple[int, int]:
        """Register ``(key, ytid, start, end, labels)`` rows as pending.

        Known segments keep their status; the labels of those not yet cached follow the list.
        ``fingerprint`` (a digest of ``rows``) is stored with them: while
        :meth:`segments_fingerprint` returns it, every row is registered exactly so, and
        registering the same list again can be skipped. Any later change to the segment rows
        (new, removed or relabelled segments, by any writer) forgets it.
        Returns ``(new rows, cached rows whose stored labels differ from the list)``.
        """
        with self.transaction() as conn:
            for trigger in _LIST_TRIGGERS:  # recreated below; not fired for every row here
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            conn.execute("DELETE FROM meta WHERE key = ?", (_FINGERPRINT,))
            conn.execute("CREATE TEMP TABLE incoming (key TEXT PRIMARY KEY, ytid TEXT, "
                         "start REAL, end_ REAL, labels TEXT)")
            try:
                conn.executemany("INSERT OR REPLACE INTO incoming VALUES (?,?,?,?,?)", rows)
                changed = conn.execute(
                    "SELECT COUNT(*) FROM clips JOIN incoming USING (key) "
                    "WHERE clips.status = 'ok' AND clips.labels != incoming.labels"
                ).fetchone()[0]
                conn.execute(
                    "UPDATE clips SET labels = i.labels FROM incoming AS i "
                    "WHERE i.key = clips.key AND clips.status != 'ok' "
                    "AND clips.labels != i.labels"
                )
                before = conn.total_changes
                conn.execute(
                    "INSERT OR IGNORE INTO clips (key, ytid, start, end_, labels) "
                    "SELECT key, ytid, start, end_, labels FROM incoming"
                )
                new = conn.total_changes - before
            finally:
                conn.execute("DROP TABLE temp.incoming")
            for statement in _LIST_TRIGGER_SQL:
                conn.execute(statement)
            if fingerprint is not None:
                conn.execute("INSERT INTO meta VALUES (?, ?)", (_FINGERPRINT, fingerprint))
        return new, changed

    def segments_fingerprint(self) -> str | None:
        """The fingerprint given to the last :meth:`add_segments`, while it still describes
        the registered rows (None once anything changed them)."""
        return self.get_meta(_FINGERPRINT)

    def statuses(self) -> pd.DataFrame:
        """``key, status, reason, permanent, attempts`` of every segment (the columns resume
        needs; reading only these keeps it quick for millions of segments)."""
        cols = ["key", "status", "reason", "permanent", "attempts"]
        rows = self._conn.execute(f"SELECT {', '.join(cols)} FROM clips").fetchall()  # noqa: S608
        return pd.DataFrame(rows, columns=cols)

    def table(self) -> pd.DataFrame:
        """The whole manifest as a DataFrame (one row per segment)."""
        return pd.read_sql_query(
            "SELECT key, ytid, start, end_ AS end, labels, status, reason, permanent, detail, "
            "attempts, file, row, length, updated FROM clips ORDER BY rowid",
            self._conn,
        )

    def counts(self) -> dict[str, int]:
        """Number of segments per status."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._conn.execute("SELECT status, COUNT(*) FROM clips GROUP BY status"):
            out[status] = n
        return out

    def mark_failed(
        self, key: str, reason: str, permanent: bool, detail: str = "", attempts: int = 1
    ) -> None:
        """Record a failure (and the attempts it took) for one segment."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE clips SET status='failed', reason=?, permanent=?, detail=?, "
                "attempts=attempts+?, file=NULL, row=NULL, updated=? WHERE key=?",
                (reason, int(permanent), detail[:2000], attempts, time.time(), key),
            )
            if cur.rowcount != 1:
                raise CacheError(f"segment {key!r} is not in manifest {str(self.path)!r}")

    def record_attempts(self, rows: Iterable[tuple[str, int, str | None, str | None]]) -> None:
        """Add ``(key, attempts, reason, detail)`` to segments that are not cached, leaving
        their status as it is (a run that stopped before it decided about them). A None reason
        or detail keeps the stored one."""
        now = time.time()
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE clips SET attempts=attempts+?, reason=COALESCE(?, reason), "
                "detail=COALESCE(?, detail), updated=? WHERE key=? AND status != 'ok'",
                [(int(n), reason, None if detail is None else detail[:2000], now, key)
                 for key, n, reason, detail in rows],
            )

    def keys_with_status(self, status: str) -> pa.Array:
        """Keys of every segment with ``status``, as an Arrow string array (read as one
        text, not a Python object per row: millions of keys take a fraction of a second)."""
        if status not in STATUSES:
            raise CacheError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        text = self._conn.execute(
            "SELECT group_concat(key, char(10)) FROM clips WHERE status = ?", (status,)
        ).fetchone()[0]
        if not text:
            return pa.array([], pa.string())
        return pc.split_pattern(pa.array([text]), "\n")[0].values

    def failed(self) -> pd.DataFrame:
        """``key, reason, permanent, attempts`` of every failed segment."""
        cols = ["key", "reason", "permanent", "attempts"]
        rows = self._conn.execute(
            "SELECT key, reason, permanent, attempts FROM clips WHERE status = 'failed'"
        ).fetchall()
        return pd.DataFrame(rows, columns=cols).astype({"permanent": bool, "attempts": int})

    def commit_batch(
        self,
        file: str,
        placements: Sequence[Placement],
        attempts: Sequence[int],
        size: int | None = None,
    ) -> None:
        """Register a published batch file (``size`` bytes) and mark its clips ``ok`` in one
        transaction."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO files (name, kind, n_rows, created, size) "
                "VALUES (?, 'batch', ?, ?, ?)",
                (check_file_name(file), len(placements), now, size),
            )
            conn.executemany(
                "UPDATE clips SET status='ok', reason=NULL, permanent=0, detail=NULL, "
                "attempts=attempts+?, file=?, row=?, length=?, updated=? WHERE key=?",
                [(a, p.file, p.row, p.length, now, p.key)
                 for p, a in zip(placements, attempts, strict=True)],
            )

    def replace_files(
        self,
        old: Sequence[str],
        new: Sequence[tuple[str, str, int, int | None]],
        placements: Sequence[tuple[str, str, int]],
    ) -> None:
        """After compaction: register ``new`` ``(name, kind, n_rows, size)`` files, point the
        ``(key, file, row)`` placements at them and forget the ``old`` files, all in one
        transaction."""
        now = time.time()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO files (name, kind, n_rows, created, size) VALUES (?, ?, ?, ?, ?)",
                [(check_file_name(name), kind, n, now, size) for name, kind, n, size in new],
            )
            conn.executemany(
                "UPDATE clips SET file=?, row=? WHERE key=?",
                [(file, row, key) for key, file, row in placements],
            )
            marks = ",".join("?" * len(old))
            conn.execute(f"DELETE FROM files WHERE name IN ({marks})", list(old))  # noqa: S608

    def merge_from(self, other: PathLike, prefix: str) -> None:
        """Take in a part manifest whose files all start with ``prefix``.

        The part is the source of truth for its own files: the files it lists replace every
        file of that prefix here, and its segments replace the ones here unless this manifest
        holds the clip from somewhere else while the part does not. Merging again after the
        part was resumed therefore brings this manifest up to date.
        """
        try:
            self._conn.execute("ATTACH DATABASE ? AS other", (str(other),))
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"cannot read manifest {str(other)!r}: {exc}") from exc
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        try:
            with self.transaction() as conn:
                conn.execute("DELETE FROM files WHERE name LIKE ? ESCAPE '\\'", (like,))
                cols = {r[1] for r in conn.execute("PRAGMA other.table_info(files)")}
                size = "size" if "size" in cols else "NULL"
                conn.execute(
                    "INSERT INTO files (name, kind, n_rows, created, size) "  # noqa: S608
                    f"SELECT name, kind, n_rows, created, {size} FROM other.files"
                )
                conn.execute(
                    "INSERT INTO clips SELECT * FROM other.clips WHERE true "
                    "ON CONFLICT(key) DO UPDATE SET status=excluded.status, "
                    "reason=excluded.reason, permanent=excluded.permanent, "
                    "detail=excluded.detail, attempts=excluded.attempts, file=excluded.file, "
                    "row=excluded.row, length=excluded.length, updated=excluded.updated, "
                    "labels=excluded.labels "
                    "WHERE excluded.status = 'ok' OR clips.status != 'ok' "
                    "OR clips.file LIKE ? ESCAPE '\\'",
                    (like,),
                )
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"cannot merge manifest {str(other)!r}: {exc}") from exc
        finally:
            self._conn.execute("DETACH DATABASE other")

    def files(self) -> pd.DataFrame:
        """Every HDF5 file the manifest references: name, kind, row count, creation time and
        size in bytes (None for files registered before sizes were recorded)."""
        cols = {r[1] for r in self._conn.execute("PRAGMA table_info(files)")}
        size = "size" if "size" in cols else "NULL AS size"
        return pd.read_sql_query(
            f"SELECT name, kind, n_rows, created, {size} FROM files "  # noqa: S608
            "ORDER BY created, name", self._conn
        )

    def placements(self, files: Sequence[str] | None = None) -> pd.DataFrame:
        """``key, ytid, start, end, labels, file, row, length`` of every ``ok`` clip (or of
        those in ``files``), ordered by file and row."""
        sql = ("SELECT key, ytid, start, end_ AS end, labels, file, row, length FROM clips "
               "WHERE status='ok'")
        params: list[str] = []
        if files is not None:
            params = list(files)
            sql += f" AND file IN ({','.join('?' * len(params))})"
        return pd.read_sql_query(sql + " ORDER BY file, row", self._conn, params=params)

    def generation(self) -> int | None:
        """A counter that changes whenever a clip enters or leaves the cached set or moves to
        another file (None for a manifest made before the counter existed, opened read-only)."""
        value = self.get_meta("generation")
        return None if value is None else int(value)

    def cached_rows(
        self, chunk: int = 200_000
    ) -> Iterator[list[tuple[str, float, float, str, int, int]]]:
        """``(ytid, start, end, file, row, length)`` of every ``ok`` clip, ``chunk`` rows at a
        time, in the stable order of the manifest (the order segments were first registered),
        which compaction and later downloads never change for the clips already cached."""
        cur = self._conn.execute(
            "SELECT ytid, start, end_, file, row, length FROM clips WHERE status='ok' "
            "ORDER BY rowid"
        )
        while rows := cur.fetchmany(chunk):
            yield rows

    def locate(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Current ``file, row`` of the ``ok`` clips among ``keys``."""
        out: dict[str, tuple[str, int]] = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            for key, file, row in self._conn.execute(
                f"SELECT key, file, row FROM clips WHERE status='ok' AND key IN ({marks})",  # noqa: S608
                part,
            ):
                out[key] = (file, row)
        return out

    def placed_counts(self) -> dict[str, int]:
        """How many ``ok`` clips each file holds according to the manifest."""
        return dict(self._conn.execute(
            "SELECT file, COUNT(*) FROM clips WHERE status='ok' GROUP BY file").fetchall())

    def never_tried(self, keys: Sequence[str]) -> set[str]:
        """The ``keys`` the manifest does not know, or knows only as registered: pending and
        never attempted (not a clip sent back on purpose, which keeps its attempts)."""
        keys = list(keys)
        known: set[str] = set()
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            known.update(k for (k,) in self._conn.execute(
                f"SELECT key FROM clips WHERE key IN ({marks}) "  # noqa: S608
                "AND NOT (status = 'pending' AND attempts = 0)", part))
        return set(keys) - known

    def release_files(self, names: Sequence[str], reason: str) -> int:
        """Forget files that are gone or damaged: their clips go back to ``pending`` (a later
        download fetches them again) with ``reason`` as detail. Returns the clips released."""
        if not names:
            return 0
        now = time.time()
        with self.transaction() as conn:
            marks = ",".join("?" * len(names))
            cur = conn.execute(
                "UPDATE clips SET status='pending', reason=NULL, permanent=0, detail=?, "  # noqa: S608
                f"file=NULL, row=NULL, length=NULL, updated=? WHERE file IN ({marks})",
                [reason, now, *names],
            )
            conn.execute(f"DELETE FROM files WHERE name IN ({marks})", list(names))  # noqa: S608
            return cur.rowcount

    def release_clips(self, keys: Sequence[str], reason: str) -> None:
        """Send single cached clips back to ``pending`` (e.g. rows whose checksum failed)."""
        now = time.time()
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE clips SET status='pending', reason=NULL, permanent=0, detail=?, "
                "file=NULL, row=NULL, length=NULL, updated=? WHERE key=?",
                [(reason, now, k) for k in keys],
            )

    def adopt(
        self,
        file: tuple[str, str, int, int | None],
        clips: Iterable[tuple[str, str, float, float, str, int, int]],
    ) -> None:
        """Register a file found on disk and its ``(key, ytid, start, end, labels, row,
        length)`` clips as cached, in one transaction (rebuilding what the manifest lost)."""
        name, kind, n_rows, size = file
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO files (name, kind, n_rows, created, size) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET kind=excluded.kind, n_rows=excluded.n_rows, "
                "size=excluded.size",
                (check_file_name(name), kind, n_rows, now, size),
            )
            conn.executemany(
                "INSERT INTO clips (key, ytid, start, end_, labels, status, attempts, file, "
                "row, length, updated) VALUES (?, ?, ?, ?, ?, 'ok', 1, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET status='ok', reason=NULL, permanent=0, "
                "detail=NULL, attempts=MAX(attempts, 1), file=excluded.file, "
                "row=excluded.row, length=excluded.length, updated=excluded.updated",
                [(k, y, s, e, lab, name, r, n, now) for k, y, s, e, lab, r, n in clips],
            )

    def set_meta(self, values: dict[str, str]) -> None:
        """Store settings, replacing old values (repair only: downloads use
        :meth:`check_or_set_meta`, which refuses changes)."""
        with self.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))


__all__ = [
    "FILE_NAME_PATTERN",
    "MANIFEST_NAME",
    "STATUSES",
    "Manifest",
    "Placement",
    "check_file_name",
    "clip_key",
]
