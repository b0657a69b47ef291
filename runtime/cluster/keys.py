"""CURVE keys on disk: ``beamish keys generate DIR`` and ``beamish keys authorize DIR KEY``.

A keys dir (0700) holds this party's pair, ``secret.key`` (0600) and ``public.key``, each
one Z85 line, and ``authorized/NAME.key``, one Z85 public key each: the clients a node
admits, or the nodes a client trusts. The checks of keys and names are pure functions.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from ..errors import ConfigError

Z85_CHARS = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
             ".-:+=^!/*?&<>()[]{}@%$#")
_Z85_VALUE = {c: i for i, c in enumerate(Z85_CHARS)}
KEY_CHARS = 40  # a 32-byte CURVE key in Z85
SECRET_FILE, PUBLIC_FILE, AUTHORIZED_DIR = "secret.key", "public.key", "authorized"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def check_key(text: str, what: str = "key") -> str:
    """Return ``text`` (stripped) if it is a CURVE key in Z85: 40 characters of the Z85
    alphabet whose 5-character groups each fit in 32 bits (pure).

    Raises:
        ConfigError: naming ``what``, the value and the expected form.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected a 40-character Z85 CURVE key (as `beamish keys "
                          f"generate` prints it), not {type(text).__name__}")
    key = text.strip()
    form = ("expected a 40-character Z85 CURVE key, as `beamish keys generate DIR` prints "
            "it (and writes to DIR/public.key)")
    if len(key) != KEY_CHARS:
        raise ConfigError(f"{what}: {key!r:.60} has {len(key)} characters; {form}")
    bad = sorted({c for c in key if c not in _Z85_VALUE})
    if bad:
        raise ConfigError(f"{what}: {key!r} has characters outside Z85 ({''.join(bad)!r}); "
                          f"{form}")
    for i in range(0, KEY_CHARS, 5):
        value = 0
        for c in key[i:i + 5]:
            value = value * 85 + _Z85_VALUE[c]
        if value >= 1 << 32:
            raise ConfigError(f"{what}: {key!r} is not valid Z85 (group {key[i:i + 5]!r} "
                              f"overflows 32 bits); {form}")
    return key


def check_key_name(name: str) -> str:
    """Return ``name`` if it can name an authorized key's file: 1-64 letters, digits,
    ``_``, ``.`` or ``-``, not starting with ``.`` or ``-`` (pure).

    Raises:
        ConfigError: what is expected.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"key name {name!r}: expected 1-64 letters, digits, '_', '.' or "
                          "'-', starting with a letter, digit or '_'")
    return name


def default_key_name(key: str) -> str:
    """The name an authorized key gets when none is given: ``key-`` and 12 hex digits of
    its SHA-256 (pure; Z85 has '/' and other characters unfit for a file name)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class KeyPair:
    """One party's CURVE keys, Z85 text.

    Attributes:
        public: the public key (shared with the other side).
        secret: the secret key (never leaves its keys dir).
    """

    public: str
    secret: str


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """A public key in ``DIR/authorized/``.

    Attributes:
        name: its file's name without ``.key``.
        key: the Z85 public key.
    """

    name: str
    key: str


def generate(dir: str) -> KeyPair:
    """Write a new key pair to ``dir`` (created 0700; ``secret.key`` 0600) and return it.

    Raises:
        ConfigError: ``dir`` has keys already (they are never overwritten), or cannot be
            written.
    """
    secret_path = os.path.join(dir, SECRET_FILE)
    if os.path.exists(secret_path):
        raise ConfigError(f"{dir!r} holds keys already ({secret_path}); they are never "
                          "overwritten: delete them first, or use another dir")
    public, secret = zmq.curve_keypair()
    while public.startswith(b"-"):  # would read as an option on a command line
        public, secret = zmq.curve_keypair()
    pair = KeyPair(public.decode("ascii"), secret.decode("ascii"))
    try:
        os.makedirs(os.path.join(dir, AUTHORIZED_DIR), mode=0o700, exist_ok=True)
        os.chmod(dir, 0o700)
        _write(secret_path, pair.secret, 0o600)
        _write(os.path.join(dir, PUBLIC_FILE), pair.public, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write keys to {dir!r}: {exc.strerror or exc}") from None
    return pair


def _write(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with open(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")


def authorize(dir: str, key: str, name: str | None = None) -> tuple[AuthorizedKey, bool]:
    """Add public ``key`` to ``dir/authorized/`` as ``NAME.key``; return it and whether it
    was added (False: it was there already, under the name returned).

    ``key`` may also be the path of a public key file (another party's ``public.key``).

    Raises:
        ConfigError: a key that is not a Z85 CURVE key, a bad name, a name taken by
            another key, or a dir that cannot be written.
    """
    if len(key.strip()) != KEY_CHARS and os.path.isfile(key):
        key = _read(key)
    key = check_key(key, "the key to authorize")
    for known in authorized_keys(dir):
        if known.key == key:
            return known, False
    name = check_key_name(name) if name is not None else default_key_name(key)
    path = os.path.join(dir, AUTHORIZED_DIR, name + ".key")
    try:
        os.makedirs(os.path.join(dir, AUTHORIZED_DIR), mode=0o700, exist_ok=True)
        _write(path, key, 0o644)
    except FileExistsError:
        raise ConfigError(f"{path} exists and holds another key: pick another --name, or "
                          "delete that file to replace it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return AuthorizedKey(name, key), True


def authorized_keys(dir: str) -> list[AuthorizedKey]:
    """The keys in ``dir/authorized/``, by name (none if it does not exist).

    Raises:
        ConfigError: a file there that is not a Z85 CURVE key (named).
    """
    folder = os.path.join(dir, AUTHORIZED_DIR)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".key"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {folder}: {exc.strerror or exc}") from None
    found = []
    for file in names:
        path = os.path.join(folder, file)
        found.append(AuthorizedKey(file[:-4], check_key(_read(path), path)))
    return found


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                          ) from None


def load_pair(dir: str, what: str = "keys") -> KeyPair:
    """Read the key pair in ``dir``.

    Raises:
        ConfigError: naming ``what`` (the config field or flag): no pair there (with the
            command that makes one), a secret readable by others, or a bad key.
    """
    secret_path = os.path.join(dir, SECRET_FILE)
    if not os.path.isfile(secret_path):
        raise ConfigError(f"{what}: {dir!r} holds no keys ({secret_path} is missing); make "
                          f"them with `beamish keys generate {dir}`")
    mode = os.stat(secret_path).st_mode
    if mode & 0o077:
        raise ConfigError(f"{what}: {secret_path} is readable by others (mode "
                          f"{mode & 0o777:o}); `chmod 600 {secret_path}`")
    return KeyPair(check_key(_read(os.path.join(dir, PUBLIC_FILE)), f"{what}: public key"),
                   check_key(_read(secret_path), f"{what}: secret key"))


def pick_server_key(known: Sequence[AuthorizedKey], choose: str | None, dir: str) -> str:
    """The server key a client trusts: ``choose`` (a name in ``known``, or a Z85 key),
    else the only key in ``known`` (pure).

    Raises:
        ConfigError: no key authorized; several and no choice; a choice that is neither
            a known name nor a key.
    """
    if choose is not None:
        for k in known:
            if choose in (k.name, k.key):
                return k.key
        if len(choose.strip()) == KEY_CHARS:
            return check_key(choose, "server_key")
        raise ConfigError(f"server_key={choose!r}: not a key name in {dir}/authorized/ "
                          f"({', '.join(k.name for k in known) or 'none'}) nor a Z85 key")
    if not known:
        raise ConfigError(f"{dir}/authorized/ holds no server key: authorize the node's "
                          f"public key with `beamish keys authorize {dir} NODE_PUBLIC_KEY`")
    if len(known) > 1:
        raise ConfigError(f"{dir}/authorized/ holds {len(known)} keys "
                          f"({', '.join(k.name for k in known)}): say which node's with "
                          "server_key=NAME (--server-key, $BEAMISH_SERVER_KEY)")
    return known[0].key
