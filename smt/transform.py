"""One CDC record in, one `_secure` record out: a pure function of the value bytes, the entity's
policy and the keyring. A record that cannot be made safe raises `RecordError`, whose `reason`
goes into the DLQ headers (never the value itself)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any, cast

import orjson

from fresh.errors import ConfigError, FreshError
from fresh.pipeline import Entity, PiiField
from fresh.secure_record import BIDX_NEXT_SUFFIX, BIDX_SUFFIX
from smt.envelope import (
    ALG_DETERMINISTIC,
    ALG_RANDOM,
    ENVELOPE,
    SCHEME,
    BatchKey,
    BlindIndexer,
    associated_data,
    b64url,
)
from smt.guard import BIDX, DepthError, check_envelope, check_index, phone_thresholds, scan_record
from smt.keyring import Keyring
from smt.normalize import NormalizeError, normalize, normalize_email, normalize_phone

smt_native: ModuleType | None
try:  # the Rust fast path (smt/native), built by scripts/setup
    import smt_native
except ImportError:  # not built: the pure-Python path alone, about half as fast
    smt_native = None

# Reasons a record goes to the DLQ (header `dlq.reason`).
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
OVERSIZE = "oversize"
WRONG_TYPE = "wrong_type"
NULL_PII = "null_pii"
NOT_NORMALIZABLE = "not_normalizable"
PLAINTEXT_PII = "plaintext_pii"
DUPLICATE_KEY = "duplicate_key"
REASONS = (NOT_JSON, NOT_OBJECT, OVERSIZE, WRONG_TYPE, NULL_PII, NOT_NORMALIZABLE, PLAINTEXT_PII, DUPLICATE_KEY)
# A JSON string literal, optionally followed by ':' (then it is an object key), or a run of other bytes.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?|[^"]+', re.DOTALL)
_ENVELOPE_MATCH = ENVELOPE.fullmatch
_BIDX_MATCH = BIDX.fullmatch


class RecordError(FreshError):
    """A record that cannot be transformed; it goes to the DLQ with `reason` and `detail`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PolicyMissingError(ConfigError):
    """An entity has no `pii:` policy; the processor refuses to start rather than pass it through."""


@dataclass(frozen=True)
class Rule:
    path: str
    steps: tuple[tuple[str, bool], ...]  # (name, is array of objects)
    field: PiiField
    parents: tuple[str, ...] | None  # the plain-object route to the leaf, or None when arrays are on it
    leaf: str
    encrypt: str  # "g", "s" or "" (no encryption)
    index: bool  # writes <leaf>_bidx
    remove: bool  # the leaf is absent from the output (drop, blind_index)
    normalize: str

    @cached_property
    def written(self) -> frozenset[str]:
        """The members this rule writes into a node: an envelope, a blind index."""
        return frozenset(([self.leaf] if self.encrypt else []) + ([self.leaf + BIDX_SUFFIX] if self.index else []))


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def compile_rules(entity: Entity) -> list[Rule]:
    if entity.pii is None:
        raise PolicyMissingError(
            f"entity {entity.name!r} (topic {entity.cdc_topic}) has no pii policy; add `pii:` to it in the "
            "pipeline config (`pii: {}` if it holds no PII)"
        )
    rules = []
    for path, f in entity.pii.items():
        steps = tuple((s.removesuffix("[]"), s.endswith("[]")) for s in path.split("."))
        simple = not any(is_array for _, is_array in steps)
        encrypt = {"encrypt": "g", "encrypt_deterministic": "s"}.get(f.action, "")
        rules.append(Rule(path, steps, f, tuple(n for n, _ in steps[:-1]) if simple else None, steps[-1][0],
                          encrypt, f.blind_index or f.action == "blind_index", f.action in ("drop", "blind_index"),
                          f.normalize))
    return rules


def _parent(record: dict[str, Any], rule: Rule, parents: tuple[str, ...]) -> dict[str, Any] | None:
    """The object holding the leaf of an array-free path, or None when a parent is absent or null.
    A parent of another type is a wrong shape (the same errors as `_leaves(strict=True)`)."""
    node = record
    for name in parents:
        child = node.get(name)
        if child is None:
            return None
        if not isinstance(child, dict):
            raise RecordError(WRONG_TYPE, f"{rule.path}: {name} is a {_json_type(child)}, expected an object")
        node = child
    return node


def _leaves(node: dict[str, Any], rule: Rule, i: int = 0, strict: bool = False) -> Iterator[dict[str, Any]]:
    """The objects holding the rule's leaf field. `strict` raises on a wrong shape; otherwise skipped."""
    if rule.parents is not None:  # fast path: no arrays on the route
        for name in rule.parents:
            child = node.get(name)
            if child is None:
                return  # absent or null parent: nothing below it to protect
            if not isinstance(child, dict):
                if strict:
                    raise RecordError(WRONG_TYPE, f"{rule.path}: {name} is a {_json_type(child)}, expected an object")
                return
            node = child
        yield node
        return
    if i == len(rule.steps) - 1:
        yield node
        return
    name, is_array = rule.steps[i]
    child = node.get(name)
    if child is None:
        return
    if not is_array:
        if isinstance(child, dict):
            yield from _leaves(child, rule, i + 1, strict)
        elif strict:
            raise RecordError(WRONG_TYPE, f"{rule.path}: {name} is a {_json_type(child)}, expected an object")
        return
    if not isinstance(child, list):
        if strict:
            raise RecordError(WRONG_TYPE, f"{rule.path}: {name} is a {_json_type(child)}, expected an array of objects")
        return
    for element in child:
        if isinstance(element, dict):
            yield from _leaves(element, rule, i + 1, strict)
        elif strict:
            raise RecordError(WRONG_TYPE, f"{rule.path}: {name}[] holds a JSON {_json_type(element)}, expected objects")


Op = Callable[[dict[str, Any]], None]


def _mark(written: dict[int, frozenset[str]], node: dict[str, Any], names: frozenset[str]) -> None:
    """Remember which members of `node` a rule wrote (checked by shape, not scanned as text)."""
    if names:
        seen = written.get(id(node))
        written[id(node)] = names if seen is None else seen | names


def _count_keys(record: dict[str, Any]) -> int:
    """Object keys in a parsed record; fewer than the input's key tokens means a duplicate key."""
    count, stack = 0, [cast(Any, record)]
    while stack:
        node = stack.pop()
        if node.__class__ is dict:
            count += len(node)
            stack.extend(v for v in node.values() if v.__class__ in (dict, list))
        else:
            stack.extend(v for v in node if v.__class__ in (dict, list))
    return count


class Transformer:
    """The policy of one entity, compiled once. Each rule becomes one closure per active key (its
    cipher, associated data, normalizer and guard bound in advance); a value that is not a string
    (null, wrong type) takes the general path, `_apply` + `_guard`, which defines the behaviour.

    With `native` (the default, when smt_native is built), a record first goes to the Rust fast
    path, which handles the common case and hands anything else back to this Python path."""

    def __init__(self, entity: Entity, default_region: str, max_record_bytes: int, native: bool = True):
        self.entity = entity
        self.collection = entity.collection
        self.rules = compile_rules(entity)
        self.default_region = default_region
        self.max_record_bytes = max_record_bytes
        self._plan_keyring: Keyring | None = None
        self._plan: list[tuple[Rule, Op, frozenset[str]]] = []
        # (the index that `<leaf>_bidx` holds, the one `<leaf>_bidx_next` holds in a dual-write window)
        self._indexers: tuple[BlindIndexer, BlindIndexer | None] | None = None
        # array paths and entities without rules stay in Python (nothing to gain for the latter)
        self.native = native and smt_native is not None and bool(self.rules) and all(
            r.parents is not None for r in self.rules)
        self._native: Any = None
        self._batch: BatchKey | None = None  # the batch key of randomized fields (smt/envelope.py)
        self._record_id = b""  # the business key of the record being transformed: bound into `g` envelopes

    def plan(self, keyring: Keyring) -> list[tuple[Rule, Op, frozenset[str]]]:
        """The compiled rules for this keyring (rebuilt when a rotation brings a new keyring)."""
        if keyring is not self._plan_keyring:
            self._indexers = index_writers(keyring)
            window = self._indexers[1] is not None
            self._plan = [(rule, self._compile(rule, keyring),
                           rule.written | ({rule.leaf + BIDX_NEXT_SUFFIX} if rule.index and window else frozenset()))
                          for rule in self.rules]
            self._native = self._native_sealer(keyring) if self.native else None
            self._plan_keyring = keyring
        return self._plan

    def _native_sealer(self, keyring: Keyring) -> Any:
        key = keyring.active
        rules = [(list(r.parents or ()), r.leaf, r.encrypt, r.index, r.remove,
                  "" if r.normalize == "none" else r.normalize,
                  associated_data(key.id, r.encrypt, self.collection, r.path) if r.encrypt else b"",
                  f"{SCHEME}.{key.id}.{r.encrypt}." if r.encrypt else "") for r in self.rules]
        assert smt_native is not None  # self.native says so
        index, following = index_writers(keyring)
        return smt_native.RecordSealer(rules, key.siv_subkey, index.id, [index.keys[k] for k in index.KINDS],
                                       self.entity.business_key, normalize_phone, self.default_region,
                                       phone_thresholds(self.default_region), following.id if following else "",
                                       [following.keys[k] for k in following.KINDS] if following else [])

    def _batch_key(self, keyring: Keyring) -> BatchKey:
        """The current batch key: a new one per processor batch (`transform_many`), after a key
        rotation, and after BATCH_LIMIT values."""
        batch = self._batch
        if batch is None or batch.key_id != keyring.active.id or batch.spent:
            batch = self._batch = keyring.active.batch()
        return batch

    def transform_many(self, values: list[bytes | None], keyring: Keyring,
                       threads: int = 1) -> list[bytes | RecordError | None]:
        """Each value's output, or the RecordError that sends it to the DLQ, in order. The native
        path takes the batch on `threads` threads without the GIL; what it leaves goes one by one
        through `__call__`, which decides every unusual record."""
        sealed: list[bytes | None]
        if self.native:
            if keyring is not self._plan_keyring:
                self.plan(keyring)
            limit = self.max_record_bytes  # b"" (not JSON) leaves tombstones and oversize values to __call__
            batch = self._batch = keyring.active.batch()
            sealed = self._native.transform_many(
                [v if v is not None and len(v) <= limit else b"" for v in values], threads, batch.salt, batch.secret)
            batch.uses += len(values)  # an upper bound on the values it sealed per field
        else:
            sealed = [None] * len(values)
        outs: list[bytes | RecordError | None] = []
        for value, out in zip(values, sealed, strict=True):
            if out is None:
                try:
                    out = self(value, keyring)
                except RecordError as exc:
                    outs.append(exc)
                    continue
            outs.append(out)
        return outs

    def __call__(self, value: bytes | None, keyring: Keyring) -> bytes | None:
        if value is None:
            return None  # tombstone: passes through
        if len(value) > self.max_record_bytes:
            limit = self.max_record_bytes
            raise RecordError(OVERSIZE, f"{len(value)} bytes, limit {limit} (pii_processor.max_record_bytes)")
        if self.native:
            if keyring is not self._plan_keyring:
                self.plan(keyring)
            batch = self._batch_key(keyring)
            out: bytes | None = self._native.transform(value, batch.salt, batch.secret)
            if out is not None:
                batch.uses += 1
                return out
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            # the position only: orjson's message could one day quote the input
            raise RecordError(NOT_JSON, f"value is not UTF-8 JSON, or nests deeper than orjson reads "
                                        f"(error at character {exc.pos})") from None
        if record.__class__ is not dict:
            raise RecordError(NOT_OBJECT, f"value is a JSON {_json_type(record)}, expected an object")
        keys = _count_keys(record)
        if keys != sum(1 for key in _TOKENS.findall(value) if key):
            raise RecordError(DUPLICATE_KEY, "an object holds the same key twice (ambiguous: which value is meant?)")
        if not self.rules:
            self._scan(record, None)
            return value
        plan = self._plan if keyring is self._plan_keyring else self.plan(keyring)
        self._record_id = record_id(record, self.entity).encode()
        written: dict[int, frozenset[str]] = {}
        for rule, op, names in plan:
            # Rules never nest (validated at load), so each node is final once its rule ran: the
            # op guards it right away, and the scan below skips what the op wrote.
            parents = rule.parents
            if parents == ():  # top-level field: the common case, no walk
                if rule.leaf in record:
                    op(record)
                    _mark(written, record, names)
            elif parents is not None:
                node = _parent(record, rule, parents)
                if node is not None and rule.leaf in node:
                    op(node)
                    _mark(written, node, names)
            else:
                for node in _leaves(record, rule, strict=True):
                    if rule.leaf in node:
                        op(node)
                        _mark(written, node, names)
        self._scan(record, written)
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:
            raise RecordError(NOT_JSON, "value cannot be re-encoded (nesting deeper than 255)") from None

    def _scan(self, record: dict[str, Any], written: dict[int, frozenset[str]] | None) -> None:
        """The guard's second half (smt/guard.py): no email or phone number anywhere else."""
        try:
            finding = scan_record(record, self.default_region, written)
        except DepthError as exc:
            raise RecordError(NOT_JSON, str(exc)) from None
        if finding is not None:
            raise RecordError(PLAINTEXT_PII, f"{finding} outside the policy's protected fields")

    def _compile(self, rule: Rule, keyring: Keyring) -> Op:
        """One rule as a closure: `_apply` then `_guard` for a node that holds the leaf, with the
        string case inlined. Identical output to the general path (tests/unit/smt/test_smt_transform.py)."""
        name, index_name, path = rule.leaf, rule.leaf + BIDX_SUFFIX, rule.path

        def general(node: dict[str, Any]) -> None:
            self._apply(node, rule, keyring)
            self._guard(node, rule)

        if not rule.encrypt and not rule.index:
            return general  # drop or keep: nothing per value worth inlining
        key = keyring.active
        ad = associated_data(key.id, rule.encrypt, self.collection, path) if rule.encrypt else b""
        siv, siv_ad, siv_prefix = key.siv.encrypt, [ad], f"{SCHEME}.{key.id}.{ALG_DETERMINISTIC}."
        assert self._indexers is not None  # plan() set them
        primary, following = self._indexers
        indexer = primary if rule.index else None
        kind = rule.normalize
        cached_index = primary.cached(kind) if rule.index else None
        next_indexer = following if rule.index else None
        next_name = name + BIDX_NEXT_SUFFIX
        remove, encrypt, region = rule.remove, rule.encrypt, self.default_region
        envelope_match, index_match = _ENVELOPE_MATCH, _BIDX_MATCH

        def op(node: dict[str, Any]) -> None:
            value = node[name]
            if value.__class__ is not str:
                general(node)
                return
            if kind == "none":
                plain = value
            else:
                try:
                    plain = normalize_email(value) if kind == "email" else normalize_phone(value, region)
                except NormalizeError as exc:
                    raise RecordError(NOT_NORMALIZABLE, f"{path}: {exc}") from None
            if indexer is not None:
                digest = node[index_name] = cached_index(plain) or indexer.index(plain, kind)  # type: ignore[misc]
                if next_indexer is not None:
                    node[next_name] = next_indexer.index(plain, kind)
            if encrypt:
                if encrypt == ALG_RANDOM:
                    sealed = node[name] = self._batch_key(keyring).seal(plain.encode(), ad + self._record_id)
                else:
                    sealed = node[name] = siv_prefix + b64url(siv(plain.encode(), siv_ad))
                if not envelope_match(sealed):  # the guard, on what was just written
                    raise RecordError(PLAINTEXT_PII, f"{path}: protected field {check_envelope(sealed, False)}")
            elif remove:
                del node[name]
            if indexer is not None and not index_match(digest):
                raise RecordError(PLAINTEXT_PII, f"{path}_bidx: protected field {check_index(digest, False)}")

        return op

    # ---- policy ----------------------------------------------------------------------------

    def _apply(self, node: dict[str, Any], rule: Rule, keyring: Keyring) -> None:
        name = rule.leaf
        if rule.remove and not rule.index:  # drop
            del node[name]
            return
        if not rule.encrypt and not rule.index:  # keep
            return
        value = node[name]
        if value is None:
            if not rule.field.nullable:
                raise RecordError(NULL_PII, f"{rule.path}: null, and the policy does not allow null (nullable: true)")
            if rule.index:
                node[name + BIDX_SUFFIX] = None
                if self._indexers and self._indexers[1] is not None:
                    node[name + BIDX_NEXT_SUFFIX] = None
            if rule.remove:
                del node[name]
            return
        if value.__class__ is not str:
            raise RecordError(WRONG_TYPE, f"{rule.path}: expected a string, got {_json_type(value)}")
        try:
            plain = normalize(rule.normalize, value, self.default_region)
        except NormalizeError as exc:
            raise RecordError(NOT_NORMALIZABLE, f"{rule.path}: {exc}") from None
        if rule.index:
            assert self._indexers is not None
            primary, following = self._indexers
            node[name + BIDX_SUFFIX] = primary.index(plain, rule.normalize)
            if following is not None:
                node[name + BIDX_NEXT_SUFFIX] = following.index(plain, rule.normalize)
        if rule.encrypt == "g":
            ad = associated_data(keyring.active.id, ALG_RANDOM, self.collection, rule.path)
            node[name] = self._batch_key(keyring).seal(plain.encode(), ad + self._record_id)
        elif rule.encrypt == "s":
            node[name] = keyring.active.encrypt_deterministic(plain.encode(), self.collection, rule.path)
        elif rule.remove:
            del node[name]

    # ---- guard -----------------------------------------------------------------------------

    def _guard(self, node: dict[str, Any], rule: Rule) -> None:
        """Check what `_apply` left, by the output's shape alone: a protected leaf holds an
        envelope (or is gone), an index holds 64 hex digits; anything else goes to the DLQ."""
        name = rule.leaf
        problem, where = None, rule.path
        if name in node:
            if rule.encrypt:
                value = node[name]
                if value.__class__ is str and _ENVELOPE_MATCH(value):  # the common case, without calls
                    problem = None
                else:
                    problem = check_envelope(value, rule.field.nullable)
            elif rule.remove:
                problem = "is still present"
        if problem is None and rule.index:
            window = self._indexers is not None and self._indexers[1] is not None
            for index in (name + BIDX_SUFFIX, name + BIDX_NEXT_SUFFIX) if window else (name + BIDX_SUFFIX,):
                if problem is None and index in node:
                    problem, where = check_index(node[index], rule.field.nullable), f"{rule.path}{index[len(name):]}"
        if problem:
            raise RecordError(PLAINTEXT_PII, f"{where}: protected field {problem}")


def index_writers(keyring: Keyring) -> tuple[BlindIndexer, BlindIndexer | None]:
    """(the index `<leaf>_bidx` holds, the one `<leaf>_bidx_next` holds). In a dual-write window
    (`keys rotate --index`) `_bidx` keeps the previous index key, so readers and joins go on
    unchanged, and `_bidx_next` carries the new active key's; after `--close-window`, `_bidx` holds
    the active key's alone."""
    previous = keyring.dual_write_index
    if previous is None or previous not in keyring.index_keys:
        return keyring.blind_index, None
    return BlindIndexer(keyring.index_keys[previous], previous), keyring.blind_index


def record_id(record: dict[str, Any], entity: Entity) -> str:
    """The record's business key as text: what a `g` envelope is bound to (docs/pii.md)."""
    value = record.get(entity.business_key)
    if value is None:
        return ""
    return value if value.__class__ is str else orjson.dumps(value).decode()


def decrypt_record(record: dict[str, Any], entity: Entity, keyring: Keyring) -> dict[str, Any]:
    """Replace each envelope at an encrypted policy path with its plaintext (operators only)."""
    from smt.envelope import decrypt, is_envelope

    rid = record_id(record, entity)
    for rule in compile_rules(entity):
        if not rule.encrypt:
            continue
        for node in _leaves(record, rule):
            if is_envelope(node.get(rule.leaf)):
                node[rule.leaf] = decrypt(keyring.keys, node[rule.leaf], entity.collection, rule.path, rid).decode()
    return record
