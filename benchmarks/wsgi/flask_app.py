"""The application every server in wsgi_bench.py runs: Flask, one route, 12 bytes."""

from __future__ import annotations

from flask import Flask, Response

app = Flask(__name__)


@app.route("/")
def hello() -> Response:
    return Response(b"hello world\n", mimetype="text/plain")
