"""Database URLs as SQLAlchemy will open them with the drivers that are installed (no SQLAlchemy
import here: plugins and the command line use it before any store is opened)."""

from __future__ import annotations

#: The pip package of each database driver module SQLAlchemy imports.
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'",
                   "pymysql": "PyMySQL", "asyncpg": "asyncpg", "cx_Oracle": "cx_Oracle", "pyodbc": "pyodbc"}


def database_url(url: str) -> str:
    """A database URL as SQLAlchemy will open it with what is installed: a plain `postgresql://` (or
    `postgres://`) URL names no driver, and SQLAlchemy 2.1 then picks psycopg 3, while
    `tunebench[postgres]` installs psycopg2; such a URL gets the installed driver. Other URLs, and
    URLs that name their driver, are returned as they are."""
    from importlib.util import find_spec

    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        if find_spec("psycopg") is None and find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url



__all__ = ["DRIVER_PACKAGES", "database_url"]
