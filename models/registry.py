"""The model registry: versioned, signed snapshots with metadata, a "current" pointer, promote and rollback.

A snapshot is a pickle, exchanged only between freshet's own processes (DESIGN.md decision 4). Each
carries the sha256 of its bytes and an HMAC-SHA256 signature, made with the shared signing key over
*all* of its metadata (name, version, parent, offset, sha256, ...): a blob or a metadata field changed
after signing, or a snapshot written without the key, is refused before anything is unpickled.

Storage is behind :class:`RegistryStore`: :class:`RedisRegistryStore` for the real thing and
:class:`InMemoryRegistryStore` for unit tests. Redis layout (``{p}`` is the prefix, ``{n}`` the name)::

    {p}:models                      set of model names
    {p}:model:{n}:seq               version counter (INCR)
    {p}:model:{n}:versions          sorted set: version -> version
    {p}:model:{n}:v{version}:blob   the pickled snapshot
    {p}:model:{n}:v{version}:meta   hash: one JSON-encoded field per ModelMeta attribute, + signature
    {p}:model:{n}:current           the version predictors serve (promote / rollback move it)
    {p}:model:{n}:record:blob       the latest *champion record*: the pickled champion alone (what serving needs)
    {p}:model:{n}:record:meta       its signed metadata (role "champion", parent = the snapshot it descends from)

Two kinds of version share one counter, so a version number is never reused for a different model:
*snapshots* (:meth:`Registry.save`: the whole group with the offset, for recovery, promote and rollback)
and *champion records* (:meth:`Registry.publish`: only the champion, small, published far more often,
what workers hot-swap). A record made at a snapshot carries the snapshot's version. Only the latest record
is kept; it is signed and verified exactly like a snapshot.

>>> registry = Registry(InMemoryRegistryStore(), signing_key="k", clock=lambda: 100.0)
>>> v1 = registry.save("default", {"w": 1}, offset=9, examples_learned=10)
>>> v2 = registry.save("default", {"w": 2}, offset=19, examples_learned=20)
>>> (v2.version, v2.parent, registry.current("default").version)
(2, 1, 2)
>>> registry.load("default")[0]
{'w': 2}
>>> registry.rollback("default").version
1
>>> registry.load("default")[0], registry.latest("default").version
({'w': 1}, 2)
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import Any, Protocol

import orjson

from models.clock import Clock, system_clock
from models.errors import FreshetError

__all__ = [
    "InMemoryRegistryStore",
    "ModelMeta",
    "RedisRegistryStore",
    "Registry",
    "RegistryStore",
    "SnapshotError",
    "sign_snapshot",
    "verify_snapshot",
]

# Bumped if the signed payload's layout changes, so old signatures stop verifying by design.
_SIGNATURE_SCHEME = b"freshet-snapshot-v1\n"


class SnapshotError(FreshetError, RuntimeError):
    """A snapshot cannot be used: unsigned, tampered, signed with another key, or not there."""


@dataclass(frozen=True)
class ModelMeta:
    """What the registry knows about one snapshot (all of it is covered by the signature)."""

    name: str
    version: int
    parent: int | None = None
    slot: str = ""
    created_ts: float = 0.0
    examples_learned: int = 0
    offset: int = -1  # Kafka offset of the last example learned; -1: none
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    size_bytes: int = 0
    role: str = "group"  # "group" (a whole ModelGroup state), "champion", "challenger", ...
    champion: str | None = None  # for a group: the name of the model that serves
    signature: str = ""

    @property
    def ref(self) -> str:
        """``name@version``, as predictions name the model that made them."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMeta:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _key_bytes(key: bytes | str) -> bytes:
    key = key.encode() if isinstance(key, str) else key
    if not key:
        raise SnapshotError("the signing key is empty; set FRESHET_SIGNING_KEY to the key shared by freshet")
    return key


def _signed_payload(meta: ModelMeta) -> bytes:
    body = meta.to_dict()
    body.pop("signature")
    return _SIGNATURE_SCHEME + orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _clean(value: Any) -> Any:
    """Metrics as the JSON round trip gives them back (NaN/inf -> None), so signatures survive storage."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def sign_snapshot(blob: bytes, meta: ModelMeta, key: bytes | str) -> ModelMeta:
    """Return ``meta`` with the blob's sha256 and size filled in and signed with ``key``.

    >>> meta = sign_snapshot(b"model bytes", ModelMeta(name="m", version=1), b"secret")
    >>> meta.size_bytes, len(meta.sha256), len(meta.signature)
    (11, 64, 64)
    >>> verify_snapshot(b"model bytes", meta, b"secret")
    >>> verify_snapshot(b"model bytez", meta, b"secret")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    models.registry.SnapshotError: snapshot m@1 is tampered: its bytes do not match the sha256 ...
    """
    meta = replace(
        meta,
        sha256=hashlib.sha256(blob).hexdigest(),
        size_bytes=len(blob),
        metrics=_clean(meta.metrics),
        signature="",
    )
    signature = hmac.new(_key_bytes(key), _signed_payload(meta), hashlib.sha256).hexdigest()
    return replace(meta, signature=signature)


def _verify_signature(meta: ModelMeta, key: bytes | str) -> None:
    if not meta.signature:
        raise SnapshotError(
            f"snapshot {meta.ref} is unsigned; refusing to load it (only snapshots saved by freshet's "
            "Registry with the signing key are loaded)"
        )
    expected = hmac.new(_key_bytes(key), _signed_payload(meta), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, meta.signature):
        raise SnapshotError(
            f"snapshot {meta.ref} has a bad signature: its metadata was tampered with or it was signed "
            "with another key (check FRESHET_SIGNING_KEY); refusing to load it"
        )


def verify_snapshot(blob: bytes, meta: ModelMeta, key: bytes | str) -> None:
    """Raise :class:`SnapshotError` unless ``meta`` is signed with ``key`` and ``blob`` matches its sha256."""
    _verify_signature(meta, key)
    if not hmac.compare_digest(hashlib.sha256(blob).hexdigest(), meta.sha256):
        raise SnapshotError(
            f"snapshot {meta.ref} is tampered: its bytes do not match the sha256 in its metadata; "
            "refusing to load it"
        )


class RegistryStore(Protocol):
    """Where blobs and metadata live. Metadata is a flat ``str -> str`` mapping (JSON-encoded values)."""

    def next_version(self, name: str) -> int: ...

    def put(self, name: str, version: int, blob: bytes, meta: Mapping[str, str]) -> None: ...

    def get_blob(self, name: str, version: int) -> bytes | None: ...

    def get_meta(self, name: str, version: int) -> dict[str, str] | None: ...

    def list_versions(self, name: str) -> list[int]: ...

    def delete(self, name: str, version: int) -> None: ...

    def set_current(self, name: str, version: int) -> None: ...

    def get_current(self, name: str) -> int | None: ...

    def names(self) -> list[str]: ...

    def put_record(self, name: str, blob: bytes, meta: Mapping[str, str]) -> None: ...

    def get_record(self, name: str, with_blob: bool = True) -> tuple[bytes | None, dict[str, str]] | None: ...


class InMemoryRegistryStore:
    """A :class:`RegistryStore` in a dict, for unit tests only.

    >>> store = InMemoryRegistryStore()
    >>> store.next_version("m"), store.next_version("m")
    (1, 2)
    """

    def __init__(self) -> None:
        self._seq: dict[str, int] = {}
        self._blobs: dict[tuple[str, int], bytes] = {}
        self._metas: dict[tuple[str, int], dict[str, str]] = {}
        self._current: dict[str, int] = {}
        self._records: dict[str, tuple[bytes, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def next_version(self, name: str) -> int:
        with self._lock:
            self._seq[name] = self._seq.get(name, 0) + 1
            return self._seq[name]

    def put(self, name: str, version: int, blob: bytes, meta: Mapping[str, str]) -> None:
        self._blobs[(name, version)] = bytes(blob)
        self._metas[(name, version)] = dict(meta)

    def get_blob(self, name: str, version: int) -> bytes | None:
        return self._blobs.get((name, version))

    def get_meta(self, name: str, version: int) -> dict[str, str] | None:
        meta = self._metas.get((name, version))
        return None if meta is None else dict(meta)

    def list_versions(self, name: str) -> list[int]:
        return sorted(v for (n, v) in self._metas if n == name)

    def delete(self, name: str, version: int) -> None:
        self._blobs.pop((name, version), None)
        self._metas.pop((name, version), None)

    def set_current(self, name: str, version: int) -> None:
        self._current[name] = version

    def get_current(self, name: str) -> int | None:
        return self._current.get(name)

    def names(self) -> list[str]:
        return sorted({n for (n, _) in self._metas})

    def put_record(self, name: str, blob: bytes, meta: Mapping[str, str]) -> None:
        self._records[name] = (bytes(blob), dict(meta))

    def get_record(self, name: str, with_blob: bool = True) -> tuple[bytes | None, dict[str, str]] | None:
        record = self._records.get(name)
        if record is None:
            return None
        return (record[0] if with_blob else None), dict(record[1])


class RedisRegistryStore:
    """A :class:`RegistryStore` in Redis (layout in the module docstring).

    The client must return bytes (``decode_responses=False``): snapshots are binary.
    """

    def __init__(self, redis_client: Any, prefix: str = "freshet") -> None:
        kwargs = getattr(getattr(redis_client, "connection_pool", None), "connection_kwargs", {})
        if kwargs.get("decode_responses"):
            raise SnapshotError(
                "the Redis client for the model registry decodes responses; "
                "create it with decode_responses=False (snapshots are bytes)"
            )
        self.redis = redis_client
        self.prefix = prefix

    def _k(self, name: str, *parts: str) -> str:
        return ":".join((self.prefix, "model", name, *parts))

    def next_version(self, name: str) -> int:
        return int(self.redis.incr(self._k(name, "seq")))

    def put(self, name: str, version: int, blob: bytes, meta: Mapping[str, str]) -> None:
        # One MULTI/EXEC: a reader never sees metadata without its blob.
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._k(name, f"v{version}", "blob"), blob)
        pipe.delete(self._k(name, f"v{version}", "meta"))
        pipe.hset(self._k(name, f"v{version}", "meta"), mapping=dict(meta))
        pipe.zadd(self._k(name, "versions"), {str(version): version})
        pipe.sadd(f"{self.prefix}:models", name)
        pipe.execute()

    def get_blob(self, name: str, version: int) -> bytes | None:
        value = self.redis.get(self._k(name, f"v{version}", "blob"))
        return None if value is None else bytes(value)

    def get_meta(self, name: str, version: int) -> dict[str, str] | None:
        raw = self.redis.hgetall(self._k(name, f"v{version}", "meta"))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    def list_versions(self, name: str) -> list[int]:
        return sorted(int(_text(v)) for v in self.redis.zrange(self._k(name, "versions"), 0, -1))

    def delete(self, name: str, version: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self._k(name, "versions"), str(version))
        pipe.delete(self._k(name, f"v{version}", "blob"), self._k(name, f"v{version}", "meta"))
        pipe.execute()

    def set_current(self, name: str, version: int) -> None:
        self.redis.set(self._k(name, "current"), str(version))

    def get_current(self, name: str) -> int | None:
        value = self.redis.get(self._k(name, "current"))
        return None if value is None else int(_text(value))

    def names(self) -> list[str]:
        return sorted(_text(n) for n in self.redis.smembers(f"{self.prefix}:models"))

    def put_record(self, name: str, blob: bytes, meta: Mapping[str, str]) -> None:
        # One MULTI/EXEC, and read back in one: a reader never pairs a record's blob with another's meta.
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._k(name, "record", "blob"), blob)
        pipe.delete(self._k(name, "record", "meta"))
        pipe.hset(self._k(name, "record", "meta"), mapping=dict(meta))
        pipe.execute()

    def get_record(self, name: str, with_blob: bool = True) -> tuple[bytes | None, dict[str, str]] | None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self._k(name, "record", "meta"))
        if with_blob:
            pipe.get(self._k(name, "record", "blob"))
        replies = pipe.execute()
        if not replies[0]:
            return None
        blob = bytes(replies[1]) if with_blob and replies[1] is not None else None
        return blob, {_text(k): _text(v) for k, v in replies[0].items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _encode_meta(meta: ModelMeta) -> dict[str, str]:
    return {k: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode() for k, v in meta.to_dict().items()}


def _decode_meta(raw: Mapping[str, str], name: str, version: int) -> ModelMeta:
    try:
        return ModelMeta.from_dict({k: orjson.loads(v) for k, v in raw.items()})
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise SnapshotError(
            f"snapshot {name}@{version} has unreadable metadata ({exc}); refusing it"
        ) from None


class _Auto(Enum):
    AUTO = "auto"


class Registry:
    """Save, list, load (verified) and move the current pointer of model snapshots.

    ``save`` pickles any object (a model, or a :meth:`models.champion.ModelGroup.state`), signs it and
    by default makes it current; ``load`` verifies sha256 and signature *before* unpickling.

    >>> store = InMemoryRegistryStore()
    >>> Registry(store, "key").save("m", [1, 2]).ref
    'm@1'
    >>> Registry(store, "another key").load("m")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    models.registry.SnapshotError: snapshot m@1 has a bad signature: ... (check FRESHET_SIGNING_KEY); ...
    """

    def __init__(
        self, store: RegistryStore, signing_key: bytes | str, clock: Clock = system_clock
    ) -> None:
        self.store = store
        self._key = _key_bytes(signing_key)
        self._clock = clock

    def save(
        self,
        name: str,
        obj: Any,
        **kwargs: Any,
    ) -> ModelMeta:
        """Pickle, sign and store ``obj`` as the next version of ``name``; the parent defaults to current."""
        return self.save_blob(name, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), **kwargs)

    def save_blob(
        self,
        name: str,
        blob: bytes,
        *,
        parent: int | _Auto | None = _Auto.AUTO,
        slot: str | None = None,
        examples_learned: int = 0,
        offset: int = -1,
        metrics: Mapping[str, Any] | None = None,
        role: str = "group",
        champion: str | None = None,
        make_current: bool = True,
    ) -> ModelMeta:
        """:meth:`save` for bytes pickled already (the learner pickles at the example, writes per batch)."""
        if not name or "@" in name:
            raise SnapshotError(f"model name {name!r}: use a non-empty name without '@'")
        if parent is _Auto.AUTO:
            parent = self.store.get_current(name)
        version = self.store.next_version(name)
        meta = sign_snapshot(
            blob,
            ModelMeta(
                name=name, version=version, parent=parent, slot=slot if slot is not None else name,
                created_ts=float(self._clock()), examples_learned=int(examples_learned), offset=int(offset),
                metrics=dict(metrics or {}), role=role, champion=champion,
            ),
            self._key,
        )
        self.store.put(name, version, blob, _encode_meta(meta))
        if make_current:
            self.store.set_current(name, version)
        return meta

    def meta(self, name: str, version: int) -> ModelMeta:
        """Metadata of one version (signature verified; the blob is not read)."""
        raw = self.store.get_meta(name, version)
        if raw is None:
            known = self.store.list_versions(name)
            raise SnapshotError(
                f"no snapshot {name}@{version}; known versions of {name!r}: {known or 'none'}"
            )
        meta = _decode_meta(raw, name, version)
        if (meta.name, meta.version) != (name, version):
            raise SnapshotError(
                f"snapshot {name}@{version} is tampered: its metadata says {meta.ref}; refusing it"
            )
        _verify_signature(meta, self._key)
        return meta

    def load(self, name: str, version: int | None = None) -> tuple[Any, ModelMeta]:
        """Verify and unpickle a version (default: the current one, else the latest)."""
        meta = self.current(name) if version is None else self.meta(name, version)
        if meta is None:
            raise SnapshotError(f"no snapshots of model {name!r} in the registry")
        blob = self.store.get_blob(name, meta.version)
        if blob is None:
            raise SnapshotError(f"snapshot {meta.ref} has metadata but no blob; it cannot be loaded")
        verify_snapshot(blob, meta, self._key)
        return pickle.loads(blob), meta

    def versions(self, name: str) -> list[ModelMeta]:
        """All versions of ``name``, oldest first."""
        return [self.meta(name, v) for v in self.store.list_versions(name)]

    def latest(self, name: str) -> ModelMeta | None:
        versions = self.store.list_versions(name)
        return self.meta(name, versions[-1]) if versions else None

    def current(self, name: str) -> ModelMeta | None:
        """The version predictors serve: the pointer set by save/promote/rollback, else the latest."""
        version = self.store.get_current(name)
        if version is None:
            return self.latest(name)
        return self.meta(name, version)

    def set_current(self, name: str, version: int) -> ModelMeta:
        """Point ``name`` at ``version`` (promote it); it must exist and verify."""
        meta = self.meta(name, version)
        self.store.set_current(name, version)
        return meta

    promote = set_current

    def rollback(self, name: str) -> ModelMeta:
        """Point ``name`` back at the current version's parent (or the version before it)."""
        current = self.current(name)
        if current is None:
            raise SnapshotError(f"no snapshots of model {name!r}; nothing to roll back")
        known = self.store.list_versions(name)
        target: int | None = None
        if current.parent is not None and current.parent in known:
            target = current.parent
        else:
            older = [v for v in known if v < current.version]
            target = older[-1] if older else None
        if target is None:
            raise SnapshotError(f"{current.ref} has no parent or earlier version to roll back to")
        return self.set_current(name, target)

    def prune(self, name: str, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` versions (never the current one); returns what was deleted."""
        if keep < 1:
            raise ValueError("keep at least one version")
        known = self.store.list_versions(name)
        current = self.store.get_current(name)
        doomed = [v for v in known[:-keep] if v != current]
        for v in doomed:
            self.store.delete(name, v)
        return doomed

    def names(self) -> list[str]:
        return self.store.names()

    # -- champion records: what workers serve ------------------------------------------------------

    def current_version(self, name: str) -> int | None:
        """The current pointer alone (not verified: for comparing, never for loading)."""
        return self.store.get_current(name)

    def publish(
        self,
        name: str,
        blob: bytes,
        *,
        version: int | None = None,
        base: int | None,
        examples_learned: int,
        offset: int,
        champion: str,
        created_ts: float | None = None,
    ) -> ModelMeta:
        """Sign and store a champion record (the pickled champion alone) as ``name``'s latest record.

        ``version``: the snapshot's when the record is made at one, else the next number of the shared
        counter. ``base``: the snapshot version the learner's models descend from (a worker serves a record
        only while the registry's current pointer is its base: after a rollback, older records are stale).

        >>> reg = Registry(InMemoryRegistryStore(), "k", clock=lambda: 5.0)
        >>> snap = reg.save("m", {"group": 1}, offset=9, examples_learned=10)
        >>> rec = reg.publish("m", pickle.dumps("champion"), base=snap.version, examples_learned=12, offset=11,
        ...                   champion="lr")
        >>> rec.version, rec.parent, rec.role, reg.load_record("m")[0]
        (2, 1, 'champion', 'champion')
        """
        if version is None:
            version = self.store.next_version(name)
        meta = sign_snapshot(
            blob,
            ModelMeta(
                name=name, version=version, parent=base, slot=name,
                created_ts=float(self._clock() if created_ts is None else created_ts),
                examples_learned=int(examples_learned), offset=int(offset), role="champion", champion=champion,
            ),
            self._key,
        )
        self.store.put_record(name, blob, _encode_meta(meta))
        return meta

    def record_meta(self, name: str) -> ModelMeta | None:
        """The latest champion record's metadata (signature verified; the blob is not read)."""
        raw = self.store.get_record(name, with_blob=False)
        if raw is None:
            return None
        meta = _decode_meta(raw[1], name, 0)
        if meta.name != name or meta.role != "champion":
            raise SnapshotError(f"champion record of {name!r} is tampered: it says {meta.ref} ({meta.role})")
        _verify_signature(meta, self._key)
        return meta

    def load_record(self, name: str) -> tuple[Any, ModelMeta]:
        """Verify and unpickle the latest champion record: ``(champion model, meta)``."""
        raw = self.store.get_record(name)
        blob = None if raw is None else raw[0]
        if raw is None or blob is None:
            raise SnapshotError(f"no champion record of {name!r} in the registry")
        return self._open_record(name, _decode_meta(raw[1], name, 0), blob)

    def open_record(self, name: str, meta: Mapping[str, Any], blob: bytes) -> tuple[Any, ModelMeta]:
        """Verify and unpickle a champion record that came another way (inline in its announcement).

        The same checks as :meth:`load_record`: signed with this registry's key, the bytes match the sha256.

        >>> reg = Registry(InMemoryRegistryStore(), "k", clock=lambda: 5.0)
        >>> rec = reg.publish("m", pickle.dumps("champion"), base=None, examples_learned=3, offset=2, champion="lr")
        >>> reg.open_record("m", rec.to_dict(), pickle.dumps("champion"))[0]
        'champion'
        >>> reg.open_record("m", rec.to_dict(), pickle.dumps("forged"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        models.registry.SnapshotError: snapshot m@1 is tampered: its bytes do not match the sha256 ...
        """
        try:
            parsed = ModelMeta.from_dict(meta)
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"champion record of {name!r} has unreadable metadata ({exc}); refusing it") from None
        return self._open_record(name, parsed, blob)

    def _open_record(self, name: str, meta: ModelMeta, blob: bytes) -> tuple[Any, ModelMeta]:
        if meta.name != name or meta.role != "champion":
            raise SnapshotError(f"champion record of {name!r} is tampered: it says {meta.ref} ({meta.role})")
        verify_snapshot(blob, meta, self._key)
        return pickle.loads(blob), meta
