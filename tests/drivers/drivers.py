"""Cairn through the Python Postgres drivers: psycopg 3, psycopg2 and asyncpg.

Each driver runs DDL, parameterised DML (asyncpg and psycopg 3 bind in the
extended protocol, asyncpg in binary), an explicit transaction that commits, one
that rolls back, and checks that errors carry their SQLSTATE.

Usage: python drivers.py HOST PORT
"""

import asyncio
import datetime
import decimal
import sys
import uuid

HOST, PORT = sys.argv[1], int(sys.argv[2])
DSN = f"postgresql://root@{HOST}:{PORT}/defaultdb?sslmode=disable"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run_psycopg3():
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py3")
        conn.execute(
            "CREATE TABLE py3 (id INT PRIMARY KEY, name TEXT, amount NUMERIC, at TIMESTAMPTZ, tag UUID)"
        )
        at = datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc)
        tag = uuid.UUID(int=7)
        for i in range(1, 4):
            conn.execute(
                "INSERT INTO py3 VALUES (%s, %s, %s, %s, %s)",
                (i, f"n{i}", decimal.Decimal("1.25") * i, at, tag),
            )
        row = conn.execute(
            "SELECT name, amount, at, tag FROM py3 WHERE id = %s", (2,)
        ).fetchone()
        check(row == ("n2", decimal.Decimal("2.50"), at, tag), f"psycopg3 row {row}")
        # Binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, amount FROM py3 WHERE id >= %s ORDER BY id", (2,))
            check(cur.fetchall() == [(2, decimal.Decimal("2.50")), (3, decimal.Decimal("3.75"))], "psycopg3 binary")
    # Transactions: the connection's context commits, an exception rolls back.
    with psycopg.connect(DSN) as conn:
        with conn.transaction():
            conn.execute("UPDATE py3 SET name = 'changed' WHERE id = 1")
        try:
            with conn.transaction():
                conn.execute("DELETE FROM py3")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        check(conn.execute("SELECT count(*) FROM py3").fetchone()[0] == 3, "psycopg3 rollback")
        check(conn.execute("SELECT name FROM py3 WHERE id = 1").fetchone()[0] == "changed", "psycopg3 commit")
        try:
            conn.execute("INSERT INTO py3 (id) VALUES (1)")
            check(False, "psycopg3 duplicate accepted")
        except psycopg.errors.UniqueViolation as e:
            check(e.sqlstate == "23505", f"psycopg3 sqlstate {e.sqlstate}")
        conn.rollback()


def run_psycopg2():
    import psycopg2
    import psycopg2.errorcodes
    import psycopg2.extensions

    conn = psycopg2.connect(host=HOST, port=PORT, user="root", dbname="defaultdb", sslmode="disable")
    cur = conn.cursor()
    # psycopg2 opens a transaction implicitly: the DDL runs inside it.
    cur.execute("DROP TABLE IF EXISTS py2")
    cur.execute("CREATE TABLE py2 (id SERIAL PRIMARY KEY, name VARCHAR(10) NOT NULL, ok BOOL)")
    check(
        conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
        "psycopg2 in a transaction",
    )
    cur.executemany("INSERT INTO py2 (name, ok) VALUES (%s, %s)", [("a", True), ("b", False), ("c", None)])
    conn.commit()
    check(conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE, "psycopg2 idle")
    cur.execute("SELECT name, ok FROM py2 ORDER BY name")
    check(cur.fetchall() == [("a", True), ("b", False), ("c", None)], "psycopg2 rows")
    cur.execute("UPDATE py2 SET ok = NOT ok WHERE name = %s RETURNING name, ok", ("a",))
    check(cur.fetchone() == ("a", False), "psycopg2 returning")
    conn.rollback()
    cur.execute("SELECT ok FROM py2 WHERE name = 'a'")
    check(cur.fetchone() == (True,), "psycopg2 rollback")
    try:
        cur.execute("INSERT INTO py2 (name) VALUES (%s)", ("far too long a name",))
        check(False, "psycopg2 accepted an over-long value")
    except psycopg2.Error as e:
        check(e.pgcode == "22001", f"psycopg2 pgcode {e.pgcode}")
    # The failed transaction refuses statements until rolled back.
    check(conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR, "psycopg2 in error")
    conn.rollback()
    cur.execute("SELECT count(*) FROM py2")
    check(cur.fetchone() == (3,), "psycopg2 count")
    conn.close()


async def run_asyncpg():
    import asyncpg

    conn = await asyncpg.connect(host=HOST, port=PORT, user="root", database="defaultdb", ssl=False)
    await conn.execute("DROP TABLE IF EXISTS pya")
    await conn.execute(
        "CREATE TABLE pya (id BIGINT PRIMARY KEY, score FLOAT8, born DATE, data BYTEA, price NUMERIC)"
    )
    born = datetime.date(1990, 5, 17)
    await conn.executemany(
        "INSERT INTO pya VALUES ($1, $2, $3, $4, $5)",
        [(i, i / 4, born, bytes([i, 0, 255]), decimal.Decimal(i) / 8) for i in range(1, 6)],
    )
    rows = await conn.fetch("SELECT id, score, born, data, price FROM pya WHERE id BETWEEN $1 AND $2 ORDER BY id", 2, 3)
    check(
        [tuple(r) for r in rows]
        == [(2, 0.5, born, bytes([2, 0, 255]), decimal.Decimal("0.25")), (3, 0.75, born, bytes([3, 0, 255]), decimal.Decimal("0.375"))],
        f"asyncpg rows {rows}",
    )
    async with conn.transaction():
        await conn.execute("DELETE FROM pya WHERE id = $1", 5)
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM pya")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    check(await conn.fetchval("SELECT count(*) FROM pya") == 4, "asyncpg transactions")
    stmt = await conn.prepare("SELECT sum(id) FROM pya WHERE id > $1")
    check(await stmt.fetchval(1) == 9, "asyncpg prepared")
    try:
        await conn.execute("SELECT 1 / 0")
        check(False, "asyncpg division by zero accepted")
    except asyncpg.PostgresError as e:
        check(e.sqlstate == "22012", f"asyncpg sqlstate {e.sqlstate}")
    await conn.close()


def main():
    run_psycopg3()
    print("psycopg3 ok")
    run_psycopg2()
    print("psycopg2 ok")
    asyncio.run(run_asyncpg())
    print("asyncpg ok")


main()
