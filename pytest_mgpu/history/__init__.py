"""Run history: every measurement appended to a database (SQLite by default, PostgreSQL for a fleet).

`url` parses and masks store URLs (no database driver imported), `schema` holds the tables and
migrations, `store` reads and writes, `rows` turns session records into rows, `gate` compares a
result with its series, `hooks` appends at session end, `noise`/`changepoint` are the statistics.
"""
