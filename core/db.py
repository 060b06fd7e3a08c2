"""Raw-SQL helpers that work the same on either PostgreSQL driver Django may use (psycopg 3, which serves the
connection pool, or psycopg2): multi-row VALUES inserts and COPY."""

from __future__ import annotations

import io

PG_MAX_PARAMS = 65535  # bind parameters per statement


def values_insert(cursor, statement: str, rows: list[tuple], *, template: str | None = None) -> list[tuple]:
    """Run ``statement`` (containing one ``VALUES %s``) with ``rows`` expanded, as few statements as the parameter
    limit allows; returns what the statements return, if they return anything. ``template`` is one row's
    placeholders (default ``(%s, …)``)."""
    if not rows:
        return []
    width = len(rows[0])
    template = template or "(" + ", ".join(["%s"] * width) + ")"
    per_statement = max(1, PG_MAX_PARAMS // width)
    returned: list[tuple] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        cursor.execute(statement.replace("VALUES %s", "VALUES " + ", ".join([template] * len(chunk)), 1),
                       [value for row in chunk for value in row])
        if cursor.description is not None:
            returned.extend(cursor.fetchall())
    return returned


def copy_in(cursor, *, table: str, columns: tuple[str, ...], text: str) -> None:
    """COPY ``text`` (PostgreSQL's text format) into ``table``."""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    raw = getattr(cursor, "cursor", cursor)  # the driver's cursor under Django's wrapper
    if hasattr(raw, "copy_expert"):  # psycopg2
        raw.copy_expert(sql, io.StringIO(text))
    else:  # psycopg 3
        with raw.copy(sql) as copy:
            copy.write(text)


def copy_out(cursor, *, query: str, params: list) -> io.StringIO:
    """COPY a query's rows out as CSV."""
    raw = getattr(cursor, "cursor", cursor)
    buffer = io.StringIO()
    if hasattr(raw, "copy_expert"):  # psycopg2
        raw.copy_expert(f"COPY ({raw.mogrify(query, params).decode()}) TO STDOUT WITH (FORMAT csv)", buffer)
    else:  # psycopg 3: COPY takes no parameters, so the query is rendered client-side first
        from psycopg import ClientCursor

        rendered = ClientCursor(raw.connection).mogrify(query, params)
        with raw.copy(f"COPY ({rendered}) TO STDOUT WITH (FORMAT csv)") as copy:
            for chunk in copy:
                buffer.write(bytes(chunk).decode())
    buffer.seek(0)
    return buffer
