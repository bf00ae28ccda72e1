"""The embedded S3 endpoint: moto's S3 served with HTTP/1.1 keep-alive, as S3 and MinIO are.

moto's own server (werkzeug's development server) answers `Connection: close` to every
request, so each PutObject would pay a TCP connect on both sides that no production S3
charges; measured per voice note that artefact was a tenth of an ingest worker's CPU.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn
from a2wsgi import WSGIMiddleware
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

THREADS = 8
"""moto's handlers are blocking WSGI code: they run on this many threads."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds its own URLs from it
    moto: Any = DomainDispatcherApplication(create_backend_app)
    app = WSGIMiddleware(moto, workers=THREADS)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
