"""The swarm key: 32 secret bytes every drone of one swarm shares, and the files that
hold it.

A key file is written by ``swarm keygen`` as 64 lowercase hex digits and a newline
(mode 0600). :func:`load_key` also accepts a file of exactly 32 raw bytes, for keys made
by other tools (``head -c 32 /dev/urandom > swarm.key``). A key file readable or writable
by group or others is refused: the key is what stops a stranger on the broker from voting.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import os
import secrets
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "KEY_BYTES", "KeyFileError", "Keyring", "SwarmKey", "generate_key_file", "load_key", "main",
    "MAX_PASSWORD_FILE_BYTES", "read_password_file", "read_private_file",
]

#: HMAC-SHA256 key length: the hash's output size (RFC 2104 §3 recommends at least that).
KEY_BYTES = 32


class KeyFileError(ValueError):
    """A key file that is missing, unsafe or not a key; the message names the path and
    the fix."""


@dataclass(frozen=True, slots=True)
class SwarmKey:
    """One swarm key. ``key_id`` is a public 4-byte fingerprint that travels in each
    envelope so a receiver holding two keys (rotation) knows which one to check against;
    it says nothing about the secret (a domain-separated hash)."""

    secret: bytes = field(repr=False)
    #: Computed once: it is compared on every envelope.
    key_id: bytes = field(init=False, repr=False, compare=False)
    _prefixes: dict[bytes, "hmac.HMAC"] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.secret) is not bytes or len(self.secret) != KEY_BYTES:
            raise ValueError(f"a swarm key is exactly {KEY_BYTES} bytes")
        key_id = hashlib.sha256(b"wildfire-swarm key id\x00" + self.secret).digest()[:4]
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "_prefixes", {})

    def mac_after(self, prefix: bytes) -> "hmac.HMAC":
        """A fresh HMAC-SHA256 under this key that has already absorbed ``prefix``. The
        state after a constant prefix is computed once and copied per use: HMAC set-up is
        a large part of a small envelope's cost."""
        cached = self._prefixes.get(prefix)
        if cached is None:
            cached = hmac.new(self.secret, prefix, hashlib.sha256)
            self._prefixes[prefix] = cached
        return cached.copy()

    def __repr__(self) -> str:
        return f"SwarmKey(id={self.key_id.hex()})"

    @classmethod
    def generate(cls) -> "SwarmKey":
        return cls(secrets.token_bytes(KEY_BYTES))


def read_private_file(path: str | os.PathLike[str], what: str, limit: int, *,
                      follow_symlinks: bool = False) -> bytes:
    """The first ``limit`` bytes of a secret file (a key, a password, a TLS private key),
    refused with :class:`KeyFileError` naming ``what``, the path and the fix when it is
    missing, not a regular file, or accessible by group or others, and unless
    ``follow_symlinks`` when it is a symlink (the swarm key; a TLS key is often a link,
    e.g. certbot's ``live/``, and was always followed). The one check of a secret file's
    safety: the agent's start, the ground station and ``swarm doctor`` use it. The mode
    is read from the opened descriptor, so it is the mode of what is read (a link's
    target)."""
    p = Path(path)
    nofollow = 0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(p, os.O_RDONLY | nofollow)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {p} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {p} cannot be opened ({exc.strerror}); it must be a "
                           f"regular file{'' if follow_symlinks else ' (not a symlink)'} "
                           "readable by this user") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{what} {p} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{what} {p} is accessible by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); fix: chmod 600 {p}")
        try:
            return os.read(fd, limit)
        except OSError as exc:
            raise KeyFileError(f"{what} {p} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


#: A password file is read up to this much (a password is a line).
MAX_PASSWORD_FILE_BYTES = 64 * 1024


def read_password_file(path: str | os.PathLike[str], what: str = "[bus] password_file") -> str:
    """The broker password in ``path`` (its first line, stripped), checked as every secret
    file is (:func:`read_private_file`; a symlink is followed), or :class:`KeyFileError`
    naming ``what``: the agent's start and ``swarm doctor``'s login read it the same way."""
    data = read_private_file(path, what, MAX_PASSWORD_FILE_BYTES, follow_symlinks=True)
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"{what} {path} is not UTF-8 text") from None


def load_key(path: str | os.PathLike[str]) -> SwarmKey:
    """Read a key file; raise :class:`KeyFileError` naming the path and the fix."""
    p = Path(path)
    if not os.path.lexists(p):
        raise KeyFileError(f"key file {p} does not exist; create one with: "
                           f"swarm keygen --out {p}")
    data = read_private_file(p, "key file", 4 * KEY_BYTES)
    if len(data) == KEY_BYTES:
        return SwarmKey(data)
    text = data.strip()
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = b""
    if len(secret) != KEY_BYTES:
        raise KeyFileError(
            f"key file {p} holds no key: expected {2 * KEY_BYTES} hex digits or "
            f"{KEY_BYTES} raw bytes, found {len(data)} bytes; make one with: "
            f"swarm keygen --out {p} --force")
    return SwarmKey(secret)


class Keyring:
    """The key that seals, and the keys that open: the one place key rotation lives
    (docs/protocol.md, "Key rotation").

    ``sealing`` seals every envelope and always opens. A rolling rotation from key A to
    key B takes two phases, each reached by restarting the drones one at a time:

    1. ``Keyring(A, next=B)``: B opens too, A still seals. A drone in this phase and one
       not yet in it both seal with A, so each reads the other.
    2. ``Keyring(B, previous=A, previous_until=T)``: B seals, A opens until T. Begun only
       when every drone is in phase 1, so every drone reads B; a drone still in phase 1
       seals with A, which this phase reads. Traffic flows both ways throughout.

    Then A is forgotten: at T by itself, or when a drone restarts without it. One
    rotation at a time: a next key and a previous key together are refused.
    ``previous_until`` is an absolute time on the opener's clock (the agent passes the
    wall clock, seconds since the Unix epoch), not a duration from start: restarting a
    drone does not extend the overlap."""

    __slots__ = ("sealing", "next", "previous", "previous_until")

    def __init__(self, sealing: SwarmKey, *, next: SwarmKey | None = None,
                 previous: SwarmKey | None = None,
                 previous_until: float | None = None) -> None:
        if next is not None and previous is not None:
            raise ValueError("one rotation at a time: a next key and a previous key together")
        if (previous is None) != (previous_until is None):
            raise ValueError("a previous key and previous_until (the end of its overlap) "
                             "go together")
        for other, name in ((next, "next"), (previous, "previous")):
            # Key ids route an envelope to its key: two keys sharing one (the same key,
            # or a 2^-32 accident) would make one of them unreachable.
            if other is not None and other.key_id == sealing.key_id:
                raise ValueError(f"the {name} key has the sealing key's key id "
                                 f"{sealing.key_id.hex()} (the same key?)")
        self.sealing = sealing
        self.next = next
        self.previous = previous
        self.previous_until = previous_until

    @property
    def phase(self) -> str:
        """``steady``, ``accept-next`` (phase 1) or ``overlap`` (phase 2, until
        ``previous_until``; the previous key may have expired since)."""
        if self.next is not None:
            return "accept-next"
        return "overlap" if self.previous is not None else "steady"

    def opening_keys(self, now: float) -> tuple[SwarmKey, ...]:
        """The keys that open at ``now``, the sealing key first."""
        keys = [self.sealing]
        if self.next is not None:
            keys.append(self.next)
        if self.previous is not None and self.previous_until is not None \
                and now < self.previous_until:
            keys.append(self.previous)
        return tuple(keys)

    def opening_key(self, key_id: bytes, now: float) -> SwarmKey | None:
        """The key that opens an envelope carrying ``key_id`` at ``now``, or None."""
        if hmac.compare_digest(key_id, self.sealing.key_id):
            return self.sealing
        nxt = self.next
        if nxt is not None and hmac.compare_digest(key_id, nxt.key_id):
            return nxt
        prev = self.previous
        if prev is not None and hmac.compare_digest(key_id, prev.key_id):
            assert self.previous_until is not None
            if now < self.previous_until:
                return prev
        return None

    def __repr__(self) -> str:
        return (f"Keyring(sealing={self.sealing!r}, next={self.next!r}, "
                f"previous={self.previous!r}, previous_until={self.previous_until!r})")


def generate_key_file(path: str | os.PathLike[str], *, force: bool = False) -> SwarmKey:
    """Write a new random key to ``path`` (hex, mode 0600, fsynced). Refuses to replace an
    existing file unless ``force``: overwriting the swarm key locks a drone out."""
    p = Path(path)
    key = SwarmKey.generate()
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    if p.is_dir():
        raise KeyFileError(f"{p} is a folder; give the key file's path (e.g. {p / 'swarm.key'})")
    if p.exists() and not force:
        raise KeyFileError(f"{p} already exists; pass --force to replace it")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        # The error names the temporary file (.NAME.tmpPID), which the user never
        # asked for: say what is wrong with the path they gave.
        raise KeyFileError(_unwritable(p, exc)) from None
    try:
        try:
            os.fchmod(fd, 0o600)   # the umask cannot widen it, but be explicit
            os.write(fd, key.secret.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)   # no half-written key left beside the real one
        raise KeyFileError(_unwritable(p, exc)) from None
    dfd = os.open(p.parent if str(p.parent) else ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return key


def _unwritable(path: Path, exc: OSError) -> str:
    """Why the key file ``path`` cannot be written, naming ``path`` and its folder."""
    folder = path.parent
    if exc.errno == errno.ENOENT and not folder.exists():
        return f"cannot write {path}: the folder {folder} does not exist"
    if exc.errno == errno.ENOTDIR:
        return f"cannot write {path}: {folder} is not a folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: no permission to write in the folder {folder}"
    return f"cannot write {path}: {exc.strerror or exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """``swarm keygen``: write a new swarm key file."""
    parser = argparse.ArgumentParser(
        prog="swarm keygen", allow_abbrev=False,
        description="Write a new random swarm key (64 hex digits, mode 0600). Copy the same "
                    "file to every drone and ground station of the swarm.")
    parser.add_argument("--out", default="swarm.key", help="key file to write (default swarm.key)")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    try:
        key = generate_key_file(args.out, force=args.force)
    except (KeyFileError, OSError) as exc:
        print(f"swarm keygen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (key id {key.key_id.hex()}, mode 0600)")
    return 0
