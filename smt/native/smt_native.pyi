# Type stub of the Rust extension (smt/native/src/lib.rs), installed next to it by maturin.

from collections.abc import Callable

class RecordSealer:
    def __init__(
        self,
        rules: list[tuple[list[str], str, str, bool, bool, str, bytes, str]],
        siv_key: bytes,
        index_id: str,
        index_keys: list[bytes],
        business_key: str,
        normalize_phone: Callable[[str, str], str],
        region: str,
        thresholds: tuple[int, int],
        next_index_id: str = "",
        next_index_keys: list[bytes] = ...,
    ) -> None: ...
    def transform(self, value: bytes, salt: bytes, batch_key: bytes) -> bytes | None: ...
    def transform_many(
        self, values: list[bytes], threads: int, salt: bytes, batch_key: bytes
    ) -> list[bytes | None]: ...

def plain_phone(value: str, region: str) -> str | None: ...
def is_suspicious(text: str, thresholds: tuple[int, int]) -> bool: ...
def simple_email(value: str) -> str | None: ...
def gcm_envelope(prefix: str, salt: bytes, batch_key: bytes, nonce: bytes, ad: bytes, plaintext: str) -> str: ...
