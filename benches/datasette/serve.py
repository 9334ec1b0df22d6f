"""Serves a SQLite file with Datasette for the benchmark: the same app as
`datasette serve -i FILE`, but without uvicorn's per-request access log,
which `datasette serve` always prints and which would be most of the cost
of a point read (a fairer peer).

usage: python serve.py FILE PORT  (binds 127.0.0.1 only)
"""

import sys

import uvicorn
from datasette.app import Datasette


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    ds = Datasette(immutables=[path])
    uvicorn.run(ds.app(), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
