"""The ceiling for `POST /jobs`: a bare Falcon app on WorkStream's own waitress server
(`workstream.http.server.HttpServer`, same settings as `workstream serve`: 32 threads,
connection limit 500, channel timeout 30 s) that reads the body, parses the same JSON and
answers 201 with a small JSON body. No validation, no storage, no logs.

    python -m benchmarks.bare_app --port 8099
"""

from __future__ import annotations

import argparse
import json
import signal
import uuid

import falcon

from workstream.config import Settings
from workstream.http.server import HttpServer


class Jobs:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json.loads(req.bounded_stream.read())
        resp.status = 201
        resp.content_type = "application/json"
        resp.text = json.dumps({"id": str(uuid.uuid4()), "type": body.get("type")})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = falcon.App()
    app.add_route("/jobs", Jobs())
    settings = Settings()
    server = HttpServer(
        app,
        host="127.0.0.1",
        port=args.port,
        threads=settings.http_threads,
        connection_limit=settings.http_connection_limit,
        channel_timeout=settings.http_channel_timeout,
    )
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(1))
    server.serve()


if __name__ == "__main__":
    main()
