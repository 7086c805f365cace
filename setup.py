"""Packaging for greenhttps (Node.js's ``https`` module for gevent programs)."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

# Keep in sync with greenhttps.__version__ (greenhttps/__init__.py).
VERSION = "0.1.0"

# The documentation site (mkdocs.yml; `mkdocs build --strict` runs in tests/test_docs.py).
# Lower bounds: what mkdocs.yml uses (validation settings: mkdocs 1.6; griffe 2's
# on_package hook for docs/_ext/rst_roles.py: mkdocstrings-python 2).  MkDocs 2 drops
# the plugin API that mkdocstrings and Material's search are built on.
DOCS_REQUIRES = [
    "mkdocs>=1.6,<2",
    "mkdocs-material>=9.5",
    "mkdocstrings[python]>=1.0",
    "mkdocstrings-python>=2.0",
]
# Content-Encoding decoders fetch() offers when they import (gzip/deflate need none):
# br and zstd.  Python 3.14's compression.zstd serves too when zstandard is absent.
# isal: ISA-L's inflate for gzip/deflate when it imports (greenhttps/_decode.py):
# 0.58x the instructions of the stdlib's zlib per crawl page (zlib-ng: 0.61x).
DECODE_REQUIRES = ["brotli>=1.2", "zstandard>=0.22", "isal>=1.7"]

# examples/distributed_crawl (the README's "Beyond one machine"): Celery and redis-py.
CRAWL_REQUIRES = ["celery[redis]>=5.4", "redis"]

TEST_REQUIRES = [
    "pytest",
    "pytest-timeout",
    "trustme",
    "hypothesis",
    # Real applications for greenhttps.wsgi and greenhttps.gunicorn (tests/test_wsgi.py,
    # tests/test_gunicorn.py, tests/test_django.py; benchmarks/wsgi_bench.py).
    "flask",
    "falcon",
    "django",
    "gunicorn",
    # llhttp (an install dependency on CPython): the suite runs the server and client
    # tests with it and with h11 (tests/test_parsers.py), on any interpreter.
    "httptools>=0.6",
    # The docs site is built (strict) by the suite: tests/test_docs.py.
    *DOCS_REQUIRES,
    # fetch(): bodies in every coding it decodes (tests/test_fetch_decode.py), and a
    # real proxy, HTTP CONNECT and forward (tests/test_fetch_proxy.py).
    *DECODE_REQUIRES,
    "pproxy>=2.7",
    # examples/distributed_crawl: real Celery workers on a real Redis
    # (tests/test_distributed_crawl.py).
    *CRAWL_REQUIRES,
    # The typing test: mypy over tests/typing_usage.py (tests/test_typing.py).
    "mypy",
]

setup(
    name="greenhttps",
    version=VERSION,
    description="Node.js's https module for gevent programs",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=["greenhttps"],
    package_data={"greenhttps": ["py.typed"]},
    include_package_data=True,
    zip_safe=False,
    python_requires=">=3.10",
    install_requires=[
        # A pinned minimum (STYLE 13.15): the code must work on both sides of
        # gevent 25.4.1's queue renames.
        "gevent>=24.2",
        "h11>=0.16,<0.17",
        "certifi",
        "cryptography>=45",
        # llhttp (Node's parser) by default where it builds: about half the CPU per
        # request of h11, which stays the pure-Python fallback (PyPy, GREENHTTPS_PARSER=h11).
        "httptools>=0.6; platform_python_implementation == 'CPython'",
    ],
    extras_require={
        # Kept so that `pip install "greenhttps[fast]"` still works: httptools is now an
        # install dependency on CPython.
        "fast": ["httptools>=0.6"],
        # fetch() decodes br and zstd bodies too (and says so in Accept-Encoding).
        "decode": DECODE_REQUIRES,
        "crawl": CRAWL_REQUIRES,
        "test": TEST_REQUIRES,
        "docs": DOCS_REQUIRES,
        "dev": [*TEST_REQUIRES, "mypy", "types-gevent", "ruff"],
    },
    entry_points={
        "console_scripts": ["greenhttps=greenhttps.__main__:main"],
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Operating System :: POSIX",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: gevent",
        "Topic :: Internet :: WWW/HTTP",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
        "Typing :: Typed",
    ],
)
