"""greenhttps.create_server({key, cert}, WSGIHandler(app)) on PORT.

``PORT CERT KEY [MODULE]`` (MODULE: ``flask_app``, the default, or ``django_app``);
several copies may run at once: each listens with reuse_port (SO_REUSEPORT) and the
kernel spreads connections over them (the multi-core recipe).
"""

from __future__ import annotations

import importlib
import sys

import greenhttps
from greenhttps.wsgi import WSGIHandler

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# The application module: flask_app (default) or django_app, both in this directory.
app = importlib.import_module(sys.argv[4] if len(sys.argv) > 4 else "flask_app").app
with open(cert, "rb") as f_cert, open(key, "rb") as f_key:
    options = {"cert": f_cert.read(), "key": f_key.read()}
server = greenhttps.create_server(options, WSGIHandler(app))
server.listen(port, "127.0.0.1", reuse_port=True)
server.serve_forever()
