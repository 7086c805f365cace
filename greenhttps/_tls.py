"""Node's TLS options turned into ``gevent.ssl`` contexts; pure, never touches the network.

Theory: everything TLS-shaped that Node takes as options (``key``, ``cert``, ``pfx``,
``ca``, ``secure_protocol``...) becomes one :class:`gevent.ssl.SSLContext`, whose
``wrap_socket`` yields cooperative sockets without monkey-patching. The context is
built once (per server; per distinct option set on the client, LRU-cached) and the
layers above only wrap sockets with it and run the handshake under their own timeout.

Three places where Python's ``ssl`` differs from Node, and what is done about it:

* ``load_cert_chain`` reads paths only; private keys must never touch disk, so the
  PEM goes into an anonymous ``memfd`` read back through ``/proc/self/fd/N``.
* Node's ``ca`` *replaces* the default roots; contexts start bare and load either
  certifi's bundle or ``ca``, never both.
* Node hands out ``authorized``/``authorization_error`` even for a connection made
  with ``rejectUnauthorized: false``. OpenSSL's verdict is lost with ``CERT_NONE``,
  so :func:`client_verify_result` re-verifies the peer's chain with
  ``cryptography.x509.verification`` and names the failure with Node's code.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import Any, Callable, Iterator, Sequence, Union

import certifi
import gevent.ssl
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from greenhttps._openssl import enable_read_ahead
from greenhttps._options import CLIENT_TLS_KEYS, SERVER_TLS_KEYS
from greenhttps.errors import InvalidArgumentError

Material = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
Materials = Union[Material, Sequence[Material]]
Context = Union[ssl.SSLContext, "CooperativeContext"]

_log = logging.getLogger("greenhttps")

# The lists of TLS option names live in _options.py, beside the option tables that
# accept them (one source; this module is in the same pure layer and imports them).
# CLIENT_TLS_KEYS includes two names that do not shape a context (below).
_CONNECTION_ONLY = frozenset({"servername", "check_server_identity"})
_MATERIAL_KEYS = frozenset({"key", "cert", "pfx", "ca", "dhparam", "crl"})
# With ssl_context these two still mean something: the caller reads them to decide
# `authorized`; every other option would have to reconfigure the user's context.
_BESIDE_SSL_CONTEXT = frozenset({"ssl_context", "request_cert", "reject_unauthorized"})

_PEM = b"-----BEGIN"
_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


# --- key and certificate material ------------------------------------------------

def read_material(value: Materials, name: str = "material") -> bytes:
    """Bytes of a ``key``/``cert``/``ca``/``pfx`` option.

    bytes and PEM text are contents (as Node); an ``os.PathLike`` or a ``str``
    without ``-----BEGIN`` is a path. A list (Node allows one for ``ca`` and
    ``cert``) gives its items joined by newlines, which keeps PEM valid.
    """
    if isinstance(value, (list, tuple)):
        return b"\n".join(read_material(item, name) for item in value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode("utf-8")
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value, "rb") as f:
                return f.read()
        except OSError as exc:
            raise InvalidArgumentError(
                f"{name}: {value!r} is neither PEM text nor a readable file ({exc.strerror})"
            ) from None
    raise InvalidArgumentError(f"{name} must be bytes, PEM text or a path, not {type(value).__name__}")


def _blobs(value: Materials, name: str) -> tuple[bytes, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(read_material(item, name) for item in items)


def _password(passphrase: str | bytes | None) -> bytes | None:
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase


@contextlib.contextmanager
def _secret_path(data: bytes) -> Iterator[str]:
    """A path that reads back as ``data``, for APIs that only take paths."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("greenhttps-tls", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            yield f"/proc/self/fd/{fd}"  # reopening gives a fresh offset: reads from 0
        finally:
            os.close(fd)
        return
    # No memfd (macOS, BSD): a 0600 file in a fresh 0700 directory, unlinked as soon
    # as OpenSSL has read it. The bytes may reach a disk cache; documented limitation.
    folder = tempfile.mkdtemp(prefix="greenhttps-")
    path = os.path.join(folder, "material.pem")
    try:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.rmdir(folder)


def _no_passphrase() -> bytes:
    # Without a password callback OpenSSL would prompt on the terminal and block.
    raise InvalidArgumentError("the private key is encrypted and no passphrase was given",
                               "ERR_OSSL_BAD_DECRYPT")


def _load_pem_pair(ctx: ssl.SSLContext, key: bytes, cert: bytes, passphrase: bytes | None) -> None:
    # cryptography tells a wrong passphrase from junk; OpenSSL says "PEM lib" for both.
    try:
        serialization.load_pem_private_key(key, passphrase, unsafe_skip_rsa_key_validation=True)
    except TypeError:  # encrypted without passphrase, or a passphrase for a plain key
        if passphrase is None:
            _no_passphrase()
        passphrase = None  # Node ignores a passphrase the key does not need
    except ValueError:
        # Not the message: a wrong passphrase sometimes yields valid padding over junk.
        if passphrase is not None and b"ENCRYPTED" in key:
            raise InvalidArgumentError("bad decrypt: wrong passphrase for the private key",
                                       "ERR_OSSL_BAD_DECRYPT") from None
        raise InvalidArgumentError("key is not a PEM private key", "ERR_OSSL_PEM_NO_START_LINE") from None
    if not _CERT_BLOCK.search(cert):
        raise InvalidArgumentError("cert is not a PEM certificate", "ERR_OSSL_PEM_NO_START_LINE")
    with _secret_path(cert) as cert_path, _secret_path(key) as key_path:
        try:
            ctx.load_cert_chain(cert_path, key_path, passphrase if passphrase is not None else _no_passphrase)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise InvalidArgumentError("the private key does not match the certificate",
                                           "ERR_OSSL_X509_KEY_VALUES_MISMATCH") from None
            code = "_".join(p for p in ("ERR_OSSL", exc.library, exc.reason) if p)
            raise InvalidArgumentError(f"could not load key/cert: {exc}", code) from None


def _load_pfx(ctx: ssl.SSLContext, pfx: bytes, passphrase: bytes | None) -> None:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(pfx, passphrase)
    except ValueError:
        raise InvalidArgumentError("could not read pfx: wrong passphrase, or not PKCS#12 data",
                                   "ERR_OSSL_BAD_DECRYPT") from None
    if key is None or cert is None:
        raise InvalidArgumentError("pfx must hold a private key and its certificate", "ERR_MISSING_OPTION")
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra])
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    _load_pem_pair(ctx, plain, chain, None)


def _keys(key: Any, passphrase: bytes | None) -> list[tuple[bytes, bytes | None]]:
    """``(PEM, passphrase)`` for each private key of Node's ``key`` option.

    ``key`` is one key or a list; a list item may be ``{'pem': ..., 'passphrase':
    ...}``, whose own passphrase wins over the top-level one (Node's rule).
    """
    out = []
    for item in key if isinstance(key, (list, tuple)) else [key]:
        if isinstance(item, Mapping):
            if item.get("pem") is None:
                raise InvalidArgumentError('key: an object in the list needs "pem"', "ERR_INVALID_ARG_TYPE")
            own = item.get("passphrase")
            out.append((read_material(item["pem"], "key"), passphrase if own is None else _password(own)))
        else:
            out.append((read_material(item, "key"), passphrase))
    return out


def _chain_for(key: bytes, passphrase: bytes | None, chains: Sequence[bytes]) -> bytes:
    """The chain of ``chains`` whose first certificate is the one of ``key``.

    With several keys (say RSA and ECDSA) Node's ``cert`` lists one chain per key;
    OpenSSL pairs them by key type, ``load_cert_chain`` wants each pair.
    """
    from cryptography import x509

    try:
        public = serialization.load_pem_private_key(key, passphrase).public_key()
    except (TypeError, ValueError):
        return chains[0]  # let _load_pem_pair name what is wrong with the key
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for chain in chains:
        first = _CERT_BLOCK.search(chain)
        if first and x509.load_pem_x509_certificate(first.group()).public_key().public_bytes(*spki) \
                == public.public_bytes(*spki):
            return chain
    raise InvalidArgumentError("no certificate in cert matches one of the private keys",
                               "ERR_OSSL_X509_KEY_VALUES_MISMATCH")


def _load_identity(ctx: ssl.SSLContext, opts: Mapping[str, Any]) -> None:
    passphrase = _password(opts.get("passphrase"))
    key, cert, pfx = opts.get("key"), opts.get("cert"), opts.get("pfx")
    if pfx is not None:
        for item in pfx if isinstance(pfx, (list, tuple)) else [pfx]:
            if isinstance(item, Mapping):  # Node's {buf, passphrase}
                if item.get("buf") is None:
                    raise InvalidArgumentError('pfx: an object in the list needs "buf"', "ERR_INVALID_ARG_TYPE")
                own = item.get("passphrase")
                _load_pfx(ctx, read_material(item["buf"], "pfx"), passphrase if own is None else _password(own))
            else:
                _load_pfx(ctx, read_material(item, "pfx"), passphrase)
    if key is not None or cert is not None:
        if key is None or cert is None:
            missing = "key" if key is None else "cert"
            raise InvalidArgumentError(f"{missing} is required with {'cert' if key is None else 'key'}",
                                       "ERR_MISSING_OPTION")
        keys = _keys(key, passphrase)
        if len(keys) == 1:  # a list of cert blobs is then one chain, split up
            _load_pem_pair(ctx, keys[0][0], read_material(cert, "cert"), keys[0][1])
        else:
            chains = _blobs(cert, "cert")
            for pem, password in keys:
                _load_pem_pair(ctx, pem, _chain_for(pem, password, chains), password)
    # No identity at all is allowed, as in Node: an sni_callback may give one, and
    # otherwise each handshake fails ('tlsClientError', ERR_SSL_NO_SHARED_CIPHER or,
    # in TLS 1.3, ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM).


def _load_ca(ctx: ssl.SSLContext, ca: Materials | None) -> None:
    if ca is None:
        ctx.load_verify_locations(cafile=certifi.where())
        return
    for blob in _blobs(ca, "ca"):
        # Only the PEM blocks: comments may hold non-ASCII, which cadata= rejects.
        pem = b"\n".join(_CERT_BLOCK.findall(blob))
        try:
            ctx.load_verify_locations(cadata=pem.decode("ascii") if _PEM in blob else blob)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidArgumentError(f"ca: not a PEM or DER certificate ({exc})") from None


def crl_pems(crl: Materials) -> list[bytes]:
    """Each CRL of Node's ``crl`` option (PEM, possibly several per blob, or DER) as PEM."""
    from cryptography import x509

    out = []
    for blob in _blobs(crl, "crl"):
        try:
            crls = ([x509.load_pem_x509_crl(m) for m in _CRL_BLOCK.findall(blob)] if _PEM in blob
                    else [x509.load_der_x509_crl(blob)])
        except ValueError as exc:
            raise InvalidArgumentError(f"crl: not a PEM or DER CRL ({exc})", "ERR_OSSL_PEM_NO_START_LINE") from None
        if not crls:
            raise InvalidArgumentError("crl: no X509 CRL block in the PEM", "ERR_OSSL_PEM_NO_START_LINE")
        out += [c.public_bytes(serialization.Encoding.PEM) for c in crls]
    return out


def _load_crl(ctx: ssl.SSLContext, crl: Materials) -> None:
    # cadata= reads certificates only; a file is read for CRLs too.
    with _secret_path(b"".join(crl_pems(crl))) as path:
        ctx.load_verify_locations(cafile=path)
    # What Node sets with a crl: every certificate of the chain, not only the leaf,
    # needs a CRL from its issuer (UNABLE_TO_GET_CRL otherwise).
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN


# --- protocol versions -------------------------------------------------------------

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_RETIRED = {"SSLv2": "SSL 2", "SSLv3": "SSL 3", "TLSv1": "TLS 1.0", "TLSv1_1": "TLS 1.1",
            "TLSv1.1": "TLS 1.1"}
_METHOD = re.compile(r"(?P<base>\w+?)(?:_server|_client)?_method")


def _version(value: str, which: str) -> ssl.TLSVersion:
    if value in _VERSIONS:
        return _VERSIONS[value]
    if value in _RETIRED:
        raise InvalidArgumentError(f'"{value}" is not offered: TLS 1.2 is the oldest version '
                                   "greenhttps allows", "ERR_TLS_INVALID_PROTOCOL_VERSION")
    raise InvalidArgumentError(f'"{value}" is not a valid {which} TLS protocol version',
                               "ERR_TLS_INVALID_PROTOCOL_VERSION")


def _apply_versions(ctx: ssl.SSLContext, opts: Mapping[str, Any]) -> None:
    low: ssl.TLSVersion | None = ssl.TLSVersion.TLSv1_2
    high: ssl.TLSVersion | None = None
    method = opts.get("secure_protocol")
    if method is not None:
        for key in ("min_version", "max_version"):
            if key in opts:
                raise InvalidArgumentError(f"TLS protocol version {opts[key]!r} conflicts with "
                                           f"secureProtocol {method!r}", "ERR_TLS_PROTOCOL_VERSION_CONFLICT")
        match = _METHOD.fullmatch(str(method))
        base = match.group("base") if match else ""
        if base == "TLSv1_2":
            low = high = ssl.TLSVersion.TLSv1_2
        elif base in _RETIRED:
            raise InvalidArgumentError(f"{method}: {_RETIRED[base]} is disabled; the OpenSSL here offers "
                                       "TLS 1.2 and 1.3 only", "ERR_TLS_INVALID_PROTOCOL_METHOD")
        elif base not in ("TLS", "SSLv23"):
            hint = " (use min_version='TLSv1.3')" if base == "TLSv1_3" else ""
            raise InvalidArgumentError(f"Unknown method: {method}{hint}", "ERR_TLS_INVALID_PROTOCOL_METHOD")
    if "min_version" in opts:
        low = _version(opts["min_version"], "minimum")
    if "max_version" in opts:
        high = _version(opts["max_version"], "maximum")
    if low is not None and high is not None and low > high:
        raise InvalidArgumentError(f"min_version {low.name} is above max_version {high.name}",
                                   "ERR_TLS_INVALID_PROTOCOL_VERSION")
    if low is not None:
        ctx.minimum_version = low
    if high is not None:
        ctx.maximum_version = high


# --- contexts ------------------------------------------------------------------------

def _options(tls: Mapping[str, Any], allowed: frozenset[str], role: str) -> dict[str, Any]:
    for name in tls:
        if name not in allowed:
            raise TypeError(f"unknown TLS option {name!r} for a {role} context")
    return {k: v for k, v in tls.items() if v is not None}  # None means "not given"


def _given_context(opts: Mapping[str, Any]) -> Context:
    extra = sorted(k for k, v in opts.items() if k not in _BESIDE_SSL_CONTEXT and v is not False)
    if extra:
        raise InvalidArgumentError(f"ssl_context cannot be combined with {', '.join(extra)}: "
                                   "configure that context instead")
    return as_gevent_context(opts["ssl_context"])


def _new_context(protocol: ssl._SSLMethod, opts: Mapping[str, Any], alpn: Sequence[str]) -> ssl.SSLContext:
    ctx: ssl.SSLContext = gevent.ssl.SSLContext(protocol)
    # A TCP close without close_notify is the end of the stream (the HTTP framing
    # tells a truncated body), as in Node: without this OpenSSL answers a peer's
    # half-close with a decode_error alert, after the response it was waiting for.
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    _apply_versions(ctx, opts)
    if opts.get("ciphers"):
        try:
            ctx.set_ciphers(opts["ciphers"])  # TLS 1.3 suites are not affected, as in Node
        except ssl.SSLError:
            raise InvalidArgumentError(f"No cipher match: {opts['ciphers']!r}", "ERR_SSL_NO_CIPHER_MATCH") from None
    ctx.set_alpn_protocols([p.decode("ascii") if isinstance(p, bytes) else p for p in alpn])
    return ctx


def create_server_context(**tls: Any) -> Context:
    """A server context from Node's TLS options (:data:`SERVER_TLS_KEYS`).

    Raises :class:`InvalidArgumentError` for a wrong passphrase or a key that does
    not match its cert, as Node does.  No key/cert at all is accepted, as in Node:
    handshakes then fail unless ``sni_callback`` gives a context that has them.
    """
    opts = _options(tls, SERVER_TLS_KEYS, "server")
    if "ssl_context" in opts:
        return _given_context(opts)
    ctx = _new_context(ssl.PROTOCOL_TLS_SERVER, opts, opts.get("alpn_protocols") or ["http/1.1"])
    _load_identity(ctx, opts)
    if not opts.get("honor_cipher_order"):  # CPython sets it by default; Node does not
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if opts.get("request_cert"):
        # CERT_OPTIONAL still fails the handshake on a bad certificate (Python has no
        # verify callback); it only lets clients without one through, unauthorized.
        ctx.verify_mode = ssl.CERT_REQUIRED if opts.get("reject_unauthorized", True) else ssl.CERT_OPTIONAL
        _load_ca(ctx, opts.get("ca"))
    elif "ca" in opts:
        _load_ca(ctx, opts["ca"])
    if "crl" in opts:
        _load_crl(ctx, opts["crl"])
    curve = opts.get("ecdh_curve")
    if curve and curve != "auto":
        try:
            ctx.set_ecdh_curve(curve)  # Python sets one curve; a Node "a:b" list is refused
        except ValueError:
            raise InvalidArgumentError(f"ecdh_curve {curve!r}: not one curve this OpenSSL knows") from None
    if opts.get("dhparam") not in (None, "auto"):
        with _secret_path(read_material(opts["dhparam"], "dhparam")) as path:
            ctx.load_dh_params(path)
    if "sni_callback" in opts:
        ctx.sni_callback = _sni_handler(opts["sni_callback"])
    return ctx


class _FrozenItem(dict):  # type: ignore[type-arg]
    """A ``{pem, passphrase}`` / ``{buf, passphrase}`` list item, hashable for the cache."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def _frozen(opts: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable stand-in for options: file paths become their contents."""
    def freeze(name: str, value: Any) -> Any:
        if name in ("key", "pfx") and isinstance(value, (list, tuple)):
            return tuple(_FrozenItem({k: read_material(v, name) if k in ("pem", "buf") else v
                                      for k, v in item.items()})
                         if isinstance(item, Mapping) else read_material(item, name) for item in value)
        if name in _MATERIAL_KEYS and value != "auto":
            return _blobs(value, name) if name in ("ca", "cert", "crl") else read_material(value, name)
        return tuple(value) if isinstance(value, list) else value
    return tuple(sorted((k, freeze(k, v)) for k, v in opts.items()))


def create_client_context(**tls: Any) -> Context:
    """A client context from Node's TLS options (:data:`CLIENT_TLS_KEYS`, from ``_options``).

    ``servername`` and ``check_server_identity`` are in that one list but shape no
    context: they are accepted here and left to the caller (SNI, the peer check).

    Contexts are shared between calls with equal options (LRU of 32): the default
    one, certifi's 117 roots, costs ~20 ms to build. **Never mutate the result.**
    ``check_hostname`` is off: the caller checks the name with
    :func:`check_server_identity` (or the user's), as Node does.
    """
    opts = _options(tls, CLIENT_TLS_KEYS, "client")
    for name in _CONNECTION_ONLY:  # the connection's, not the context's: SNI and the peer check
        opts.pop(name, None)
    if "ssl_context" in opts:
        return _given_context(opts)
    if opts.get("reject_unauthorized") is True:
        del opts["reject_unauthorized"]  # the default: share the default context
    key = _frozen(opts)
    try:
        return _client_context(key)
    except TypeError:  # an unhashable option value: build without caching
        return _build_client_context(dict(key))


@functools.lru_cache(maxsize=32)
def _client_context(key: tuple[tuple[str, Any], ...]) -> ssl.SSLContext:
    return _build_client_context(dict(key))


def _build_client_context(opts: Mapping[str, Any]) -> ssl.SSLContext:
    ctx = _new_context(ssl.PROTOCOL_TLS_CLIENT, opts, ["http/1.1"])
    ctx.check_hostname = False
    if not opts.get("reject_unauthorized", True):
        ctx.verify_mode = ssl.CERT_NONE  # client_verify_result still finds `authorized`
    _load_ca(ctx, opts.get("ca"))
    if "crl" in opts:
        _load_crl(ctx, opts["crl"])  # with CERT_NONE, client_verify_result checks it
    _load_identity(ctx, opts)
    return ctx


def _sni_handler(callback: Callable[..., Any]) -> Callable[[Any, str | None, ssl.SSLContext], int | None]:
    """Adapt Node's ``SNICallback(servername, cb)`` or ``fn(servername) -> ctx`` for OpenSSL.

    The result may be a context or a dict of server options (contexts built from
    equal dicts are cached). A Node-style callback must call ``cb`` before it returns:
    OpenSSL's callback cannot wait.
    """
    try:
        params = inspect.signature(callback).parameters.values()
        node_style = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
                         for p in params) >= 2
    except (TypeError, ValueError):
        node_style = False
    from_options = functools.lru_cache(maxsize=32)(lambda key: create_server_context(**dict(key)))

    def resolve(servername: str) -> Any:
        if node_style:
            answers: list[tuple[Any, Any]] = []
            callback(servername, lambda err=None, ctx=None: answers.append((err, ctx)))
            if not answers:
                raise RuntimeError("sni_callback returned without calling its callback")
            err, result = answers[0]
            if err:
                raise err if isinstance(err, BaseException) else RuntimeError(str(err))
        else:
            result = callback(servername)
        if isinstance(result, Mapping):
            snake = {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in result.items()}
            key = _frozen(_options(snake, SERVER_TLS_KEYS, "server"))
            try:
                return from_options(key)
            except TypeError:
                return create_server_context(**dict(key))
        return result.context if isinstance(result, CooperativeContext) else result

    def on_servername(sslsock: Any, servername: str | None, _ctx: ssl.SSLContext) -> int | None:
        if servername is None:
            return None  # as Node: no SNI, no callback
        try:
            chosen = resolve(servername)
            if chosen is not None:
                sslsock.context = chosen
        except Exception:
            # Python would only print this; Node destroys the socket. Log, refuse.
            _log.exception("sni_callback failed for %r; refusing the handshake", servername)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    return on_servername


# --- sockets ---------------------------------------------------------------------------

class CooperativeContext:
    """A stdlib ``ssl.SSLContext`` whose ``wrap_socket`` gives ``gevent.ssl.SSLSocket``.

    Read-only view: attributes are read from ``context``, never written to it.
    """

    __slots__ = ("context",)

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def wrap_socket(self, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                    session: ssl.SSLSession | None = None) -> gevent.ssl.SSLSocket:
        # `_context`/`_session` are gevent's private keywords, pinned by a test.
        return gevent.ssl.SSLSocket(sock=sock, server_side=server_side,
                                    do_handshake_on_connect=do_handshake_on_connect,
                                    suppress_ragged_eofs=suppress_ragged_eofs,
                                    server_hostname=server_hostname, _context=self.context, _session=session)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context, name)

    def __repr__(self) -> str:
        return f"<CooperativeContext {self.context!r}>"


def as_gevent_context(ctx: Context) -> Context:
    """``ctx`` if it is gevent's already, else a :class:`CooperativeContext` view of it."""
    if isinstance(ctx, (gevent.ssl.SSLContext, CooperativeContext)):
        return ctx
    if isinstance(ctx, ssl.SSLContext):
        return CooperativeContext(ctx)
    raise InvalidArgumentError(f"ssl_context must be an ssl.SSLContext, not {type(ctx).__name__}",
                               "ERR_TLS_INVALID_CONTEXT")


def stdlib_context(ctx: Context) -> ssl.SSLContext:
    """The ``ssl.SSLContext`` behind ``ctx`` (for ``wrap_bio``)."""
    return ctx.context if isinstance(ctx, CooperativeContext) else ctx


def wrap_socket(ctx: Context, sock: Any, *, server_side: bool, server_hostname: str | None = None,
                session: ssl.SSLSession | None = None) -> gevent.ssl.SSLSocket:
    """Wrap a connected socket; the caller runs ``do_handshake()`` under its own timeout.

    ``server_hostname`` may be an IP literal: CPython sends no SNI for IPs (as Node).
    """
    inner = ctx.context if isinstance(ctx, CooperativeContext) else ctx
    tls = CooperativeContext(inner).wrap_socket(sock, server_side=server_side, do_handshake_on_connect=False,
                                                server_hostname=server_hostname, session=session)
    # One read() per TLS record rather than two (header, then body); see _openssl.
    enable_read_ahead(tls)
    return tls
