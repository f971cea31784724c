"""The SQL engine the feature definitions run on (DuckDB by default).

Feature SQL in `features/*.py` is standard SQL (joins, CASE, COUNT(DISTINCT), window
functions) so that a Spark backend can run the same text. The few dialect-specific
pieces (reading Parquet, day arithmetic) live here, behind `Dialect`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dialect:
    """SQL snippets that differ between engines (DuckDB here; Spark equivalents noted)."""

    name: str = "duckdb"

    def day(self, ts: str) -> str:
        """The midnight of a timestamp's day, as a timestamp (Spark: date_trunc('DAY', ts))."""
        return f"CAST(CAST({ts} AS DATE) AS TIMESTAMP)"

    def day_number(self, ts: str) -> str:
        """Whole days from 1970-01-01 to a timestamp's day, an integer (Spark: datediff(ts, '1970-01-01'))."""
        return f"date_diff('day', DATE '1970-01-01', CAST({ts} AS DATE))"

    def day_start(self, day_number: int) -> str:
        """The midnight starting day number `day_number`, a timestamp literal (standard SQL)."""
        day = pd.Timestamp("1970-01-01") + pd.Timedelta(days=int(day_number))
        return f"TIMESTAMP '{day:%Y-%m-%d %H:%M:%S}'"

    def days_between(self, start: str, end: str) -> str:
        """Whole days from `start` to `end` (Spark: datediff(end, start))."""
        return f"date_diff('day', CAST({start} AS DATE), CAST({end} AS DATE))"

    def hours_between(self, start: str, end: str) -> str:
        """Fractional hours from `start` to `end`.

        Spark: (unix_timestamp(end) - unix_timestamp(start)) / 3600.
        """
        return f"(epoch({end}) - epoch({start})) / 3600.0"

    def minus_days(self, ts: str, days: int) -> str:
        """`ts` minus a whole number of days (standard interval literal)."""
        return f"({ts} - INTERVAL '{int(days)}' DAY)"

    def parquet(self, path_glob: str) -> str:
        """A table expression reading Parquet files (Spark: parquet.`path`)."""
        return "read_parquet('" + path_glob.replace("'", "''") + "')"

    def parquet_files(self, files: list[str], with_filename: bool = False) -> str:
        """A table expression over a list of Parquet files, optionally with a `filename` column
        (Spark: spark.read.parquet(*files) with input_file_name())."""
        listed = ", ".join(sql_string(f) for f in files)
        return f"read_parquet([{listed}]{', filename = true' if with_filename else ''})"


def sql_string(value: str) -> str:
    """A standard SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


class Engine:
    """A DuckDB connection with named tables and views; `query` returns pandas frames."""

    def __init__(
        self, threads: int | None = None, memory_limit: str | None = None, temp_directory: str | None = None
    ) -> None:
        self.dialect = Dialect()
        self.con = duckdb.connect()
        if temp_directory:  # where DuckDB spills when the aggregates outgrow memory_limit
            self.con.execute(f"SET temp_directory = {sql_string(temp_directory)}")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
        self.con.execute("SET preserve_insertion_order = false")

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """Expose a pandas frame as a table named `name`."""
        self.con.register(name, frame)

    def create_table(self, name: str, sql: str) -> None:
        """Materialise a query as a table (used for the small per-day event aggregates)."""
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")

    def create_view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    def scalar(self, sql: str) -> object:
        rows = self.con.execute(sql).fetchall()  # fetchall completes the result (DuckDB 2)
        return rows[0][0] if rows else None

    def close(self) -> None:
        self.con.close()
