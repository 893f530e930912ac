//! The PII processor's per-record transform, in Rust: the fast path of `smt.transform.Transformer`.
//!
//! `smt/transform.py` defines the behaviour; this module repeats its common case only, and
//! answers `None` ("take the Python path") for anything else: a value that is not a JSON object,
//! a policy field that is not a string (null, number, object), an email that is not ASCII, a phone
//! number that is not plain (see `is_plain_phone`; Python's phonenumbers reads those), a wrong
//! shape on a policy path, input orjson would refuse (a lone surrogate, an infinite float), and
//! any output that still holds an '@' (the Python guard decides). So every refusal, DLQ reason
//! and guard check stays in one place, Python, and this module can only make the common case
//! faster. Output equality with the Python path is tested in tests/unit/smt/test_smt_native.py
//! (same JSON values, envelopes that decrypt to the same plaintext, identical blind indexes and
//! deterministic envelopes). Numbers keep their text: `2.50` stays `2.50`, where orjson would
//! write `2.5`; the values are equal.
//!
//! Envelope format (docs/pii.md): `pf1.<key id>.<g|s>.<base64url, no padding>`, associated data
//! `pf1.<key id>.<alg>|<collection>|<field path>`; `g` = nonce(12) || AES-256-GCM ciphertext || tag,
//! `s` = AES-256-SIV (RFC 5297) SIV || ciphertext. Blind index: lowercase hex HMAC-SHA256.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aes_siv::siv::Aes256Siv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rlibphonenumber::{NumberLengthType, PhoneNumber, PhoneNumberFormat, Region};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

const NONCE_BYTES: usize = 12;
const SALT_BYTES: usize = 16;

/// The AES-256-GCM key of one batch and the salt it was derived with (`smt.envelope.BatchKey`).
struct Batch {
    gcm: Aes256Gcm,
    salt: [u8; SALT_BYTES],
}

impl Batch {
    fn new(salt: &[u8], key: &[u8]) -> PyResult<Self> {
        Ok(Batch {
            gcm: Aes256Gcm::new_from_slice(key)
                .map_err(|_| PyValueError::new_err("batch key must be 32 bytes"))?,
            salt: salt
                .try_into()
                .map_err(|_| PyValueError::new_err("salt must be 16 bytes"))?,
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Normalize {
    None,
    Email,
    Phone,
}

#[derive(Clone, Copy, PartialEq)]
enum Encrypt {
    None,
    Random,
    Deterministic,
}

struct Rule {
    parents: Vec<String>,
    leaf: String,
    index_name: String,
    next_index_name: String,
    encrypt: Encrypt,
    index: bool,
    remove: bool,
    normalize: Normalize,
    ad: Vec<u8>,
    prefix: String,
}

/// The compiled policy of one entity under one keyring key, like a `Transformer` plan.
#[pyclass(frozen, module = "smt_native")]
struct RecordSealer {
    rules: Vec<Rule>,
    siv_key: [u8; 64],
    /// `<index key id>.`: the prefix of every blind index
    index_prefix: String,
    /// HMAC keys per normalizer (none, email, phone): an email and a phone never share one
    index_macs: [Hmac<Sha256>; 3],
    /// in a dual-write window: the new index key (prefix, HMAC keys) written to `<leaf>_bidx_next`
    next_index: Option<(String, [Hmac<Sha256>; 3])>,
    /// the record field whose value a `g` envelope is bound to (the entity's business key)
    business_key: String,
    normalize_phone: Py<PyAny>,
    region: Py<PyAny>,
    phone_region: Option<Region>,
    /// E.164 of plain phone input seen before: contacts repeat across purchases
    phone_cache: Mutex<HashMap<String, String>>,
    random_fields: usize,
    /// smt.guard.phone_thresholds(region): digits that make a string worth a look
    thresholds: (usize, usize),
}

const MIN_RECORDS_PER_THREAD: usize = 256; // below this a thread costs more than it saves
const PHONE_CACHE_LIMIT: usize = 65_536; // cleared when full, like the Python caches

/// Python's `str.strip()` whitespace among ASCII characters (`str.isspace`).
fn is_py_ascii_space(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x20)
}

/// `smt.normalize.normalize_email` for the simple case: ASCII, one `@`, a local part of RFC 5322
/// atext and dots, a domain of LDH labels (1-63 characters, no hyphen at either end or in the 3rd
/// and 4th place, 253 characters at most), where NFKC, case folding and IDNA only lowercase.
/// None (take the Python path) for anything else.
fn normalize_email(value: &str) -> Option<String> {
    if !value.is_ascii() {
        return None;
    }
    let bytes = value.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !is_py_ascii_space(*b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_py_ascii_space(*b))
        .map_or(start, |i| i + 1);
    let text = value[start..end].to_ascii_lowercase();
    let (local, domain) = text.split_once('@')?;
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
    if local.is_empty() || !local.bytes().all(atext) {
        return None;
    }
    if domain.is_empty() || domain.len() > 253 {
        return None;
    }
    for label in domain.split('.') {
        let b = label.as_bytes();
        if b.is_empty()
            || b.len() > 63
            || b[0] == b'-'
            || b[b.len() - 1] == b'-'
            || (b.len() >= 4 && &b[2..4] == b"--")
            || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return None;
        }
    }
    Some(text)
}

/// A character whose NFKC form holds a digit, `@` or `+` (full-width `＠１２`, circled digits, CJK
/// date and unit symbols), or any non-ASCII numeric character: the guard must read such text
/// folded, so the record goes to the Python path. tests/unit/smt/test_smt_guard.py checks this set
/// against Python's unicodedata over every code point.
fn lookalike(c: char) -> bool {
    !c.is_ascii()
        && (c.is_numeric()
            || matches!(
                c as u32,
                0x207A | 0x208A | 0x3200..=0x33FF | 0xFB29 | 0xFE62 | 0xFE6B | 0xFF0B | 0xFF20
            ))
}

/// Could this text (a string or an object key) hold an email address or a full phone number, as
/// `smt.guard.is_candidate` sees it? A superset of that test: true whenever Python's guard would
/// have to look, so the native path hands the record back and emits only what Python would pass.
fn suspicious(text: &str, thresholds: (usize, usize)) -> bool {
    let mut digits = 0;
    let mut plus = false;
    for c in text.chars() {
        match c {
            '@' => return true,
            '0'..='9' => digits += 1,
            '+' => plus = true,
            _ if lookalike(c) => return true,
            _ => {}
        }
    }
    digits >= thresholds.0 || (plus && digits >= thresholds.1)
}

/// Deeper than this the native path hands back (Python refuses beyond `smt.guard.MAX_DEPTH`, 128).
const MAX_NATIVE_DEPTH: usize = 100;

/// Reads one untouched JSON value the way the guard must see it: every string and object key
/// decoded, an object holding one key twice refused (ambiguous), nesting bounded. Err means "take
/// the Python path", which then decides (DLQ reason or emit).
struct Scan {
    depth: usize,
    thresholds: (usize, usize),
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        if suspicious(v, self.thresholds) {
            return Err(E::custom("guard"));
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth > MAX_NATIVE_DEPTH {
            return Err(serde::de::Error::custom("depth"));
        }
        let child = || Scan {
            depth: self.depth + 1,
            thresholds: self.thresholds,
        };
        while seq.next_element_seed(child())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_NATIVE_DEPTH {
            return Err(serde::de::Error::custom("depth"));
        }
        let mut keys: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if suspicious(&key, self.thresholds) || keys.contains(&key) {
                return Err(serde::de::Error::custom("guard"));
            }
            keys.push(key);
            map.next_value_seed(Scan {
                depth: self.depth + 1,
                thresholds: self.thresholds,
            })?;
        }
        Ok(())
    }
}

/// Plain phone input: an optional leading '+', then only digits, spaces, parentheses, dots and
/// hyphens, with 7 to 17 digits. No letters, extensions, other scripts or other punctuation.
fn is_plain_phone(value: &str) -> bool {
    let body = value.trim_start_matches(' ');
    let body = body.strip_prefix('+').unwrap_or(body);
    let mut digits = 0;
    for b in body.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b' ' | b'(' | b')' | b'.' | b'-' => {}
            _ => return false,
        }
    }
    (7..=17).contains(&digits)
}

/// E.164 of plain phone input (`is_plain_phone`), by rlibphonenumber: the same algorithm and Google
/// metadata as Python's phonenumbers (both pinned at v9.0.42), without its ~18 µs per number.
/// None for anything else, or if the parser fails or panics: Python's phonenumbers then decides.
/// tests/unit/smt/test_smt_native.py compares the two on 42,000 numbers in every test run.
fn plain_phone_e164(value: &str, region: Region) -> Option<String> {
    if !is_plain_phone(value) {
        return None;
    }
    let parsed = std::panic::catch_unwind(|| PhoneNumber::parse(value, Some(region)))
        .ok()?
        .ok()?;
    if parsed.extension.as_deref().is_some_and(|x| !x.is_empty()) {
        return None;
    }
    if !matches!(
        parsed.is_possible_with_reason(),
        Ok(NumberLengthType::IsPossible)
    ) {
        return None; // Python refuses it (not_normalizable)
    }
    Some(parsed.format_as(PhoneNumberFormat::E164).into_owned())
}

/// A JSON object as borrowed slices of the input: keys in their order (a repeated key is refused),
/// values untouched until a rule rewrites them. Untouched values are copied to the output byte for byte.
struct Obj<'a> {
    entries: Vec<(&'a str, Slot<'a>)>,
}

enum Slot<'a> {
    Raw(&'a RawValue),
    Obj(Obj<'a>),
    /// An envelope or a hex digest, written by this module: ASCII that needs no JSON escaping.
    Token(String),
}

impl<'de> Deserialize<'de> for Obj<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor;
        impl<'de> Visitor<'de> for ObjVisitor {
            type Value = Obj<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<'de>, A::Error> {
                let mut entries: Vec<(&'de str, Slot<'de>)> = Vec::with_capacity(16);
                // &str: a key with escapes fails here, and the Python path takes the record; so
                // does a key written twice (ambiguous JSON: Python sends it to the DLQ)
                while let Some((key, value)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    entries.push((key, Slot::Raw(value)));
                }
                Ok(Obj { entries })
            }
        }
        deserializer.deserialize_map(ObjVisitor)
    }
}

impl<'a> Obj<'a> {
    fn get_mut(&mut self, key: &str) -> Option<&mut Slot<'a>> {
        self.entries
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Sets `key` in place, or appends it (a Python dict assignment).
    fn set(&mut self, key: &'a str, value: Slot<'a>) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Removes `key`, keeping the order of the others (a Python `del`).
    fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| *k != key);
    }

    /// The guard over what this record will emit: every key, and every value the sealer did not
    /// write (envelopes and blind indexes are checked by construction). False: hand back.
    fn clean(&self, depth: usize, thresholds: (usize, usize)) -> bool {
        self.entries.iter().all(|(key, value)| {
            !suspicious(key, thresholds)
                && match value {
                    Slot::Token(_) => true,
                    Slot::Obj(obj) => obj.clean(depth + 1, thresholds),
                    Slot::Raw(raw) => {
                        let mut de = serde_json::Deserializer::from_str(raw.get());
                        serde::de::DeserializeSeed::deserialize(
                            Scan {
                                depth: depth + 1,
                                thresholds,
                            },
                            &mut de,
                        )
                        .is_ok()
                    }
                }
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Keys need no escaping: a borrowed key held none (escaped keys fail to parse into
            // `&str`), and a `<leaf>_bidx` key is an identifier (policy paths, fresh/pipeline.py).
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                Slot::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
                Slot::Obj(obj) => obj.write(out),
                Slot::Token(token) => {
                    out.push(b'"');
                    out.extend_from_slice(token.as_bytes());
                    out.push(b'"');
                }
            }
        }
        out.push(b'}');
    }
}

/// Inputs whose Python (orjson) reading this module does not repeat: a lone surrogate escape
/// (orjson refuses it) and an exponent of three digits (orjson refuses an infinite float). Found
/// conservatively, anywhere in the bytes; such a record takes the Python path.
fn needs_python_reading(value: &[u8]) -> bool {
    let lone_surrogate = memchr::memchr_iter(b'\\', value).any(|i| match value.get(i + 1..i + 4) {
        Some([b'u', d, x]) => (d | 0x20) == b'd' && matches!(x | 0x20, b'8'..=b'9' | b'a'..=b'f'),
        _ => false,
    });
    let long_exponent = || {
        memchr::memchr2_iter(b'e', b'E', value).any(|i| {
            if i == 0 || !value[i - 1].is_ascii_digit() {
                return false;
            }
            let mut j = i + 1;
            if matches!(value.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            value[j.min(value.len())..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
                >= 3
        })
    };
    lone_surrogate || long_exponent()
}

enum Parent<'s, 'a> {
    Found(&'s mut Obj<'a>),
    Absent,
    WrongShape,
}

/// The object holding a rule's leaf; an absent or null parent means nothing to protect below it.
/// A parent still in its raw form is parsed (once) into an `Obj`.
fn parent<'s, 'a>(node: &'s mut Obj<'a>, parents: &[String]) -> Parent<'s, 'a> {
    let Some((name, rest)) = parents.split_first() else {
        return Parent::Found(node);
    };
    let Some(slot) = node.get_mut(name) else {
        return Parent::Absent;
    };
    if let Slot::Raw(raw) = slot {
        let text = raw.get();
        if text == "null" {
            return Parent::Absent;
        }
        if !text.starts_with('{') {
            return Parent::WrongShape;
        }
        match serde_json::from_str::<Obj<'a>>(text) {
            Ok(obj) => *slot = Slot::Obj(obj),
            Err(_) => return Parent::WrongShape, // e.g. an escaped key: Python decides
        }
    }
    match slot {
        Slot::Obj(child) => parent(child, rest),
        _ => Parent::WrongShape,
    }
}

impl RecordSealer {
    fn blind_index(&self, plain: &str, kind: Normalize) -> String {
        hex_index(&self.index_prefix, &self.index_macs, plain, kind)
    }
}

/// `<index key id>.` + hex HMAC-SHA256 under the kind's subkey (`smt.envelope.BlindIndexer`).
fn hex_index(prefix: &str, macs: &[Hmac<Sha256>; 3], plain: &str, kind: Normalize) -> String {
    {
        let mut mac = macs[kind as usize].clone();
        mac.update(plain.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(prefix.len() + 64);
        out.push_str(prefix);
        for b in digest {
            out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
        }
        out
    }
}

impl RecordSealer {
    fn seal(
        &self,
        rule: &Rule,
        plain: &str,
        nonce: &[u8],
        batch: &Batch,
        record_id: &str,
    ) -> Option<String> {
        seal_with(rule, plain, nonce, batch, record_id, &self.siv_key)
    }

    /// `py` is None on a worker thread: a phone number that needs Python's phonenumbers then
    /// sends the record back to the caller, which runs it again with the GIL.
    fn normalize(&self, py: Option<Python<'_>>, rule: &Rule, value: &str) -> Option<String> {
        match rule.normalize {
            Normalize::None => Some(value.to_owned()),
            Normalize::Email => normalize_email(value),
            Normalize::Phone => {
                if let Some(region) = self.phone_region {
                    let mut cache = self.phone_cache.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(e164) = cache.get(value) {
                        return Some(e164.clone());
                    }
                    if let Some(e164) = plain_phone_e164(value, region) {
                        if cache.len() >= PHONE_CACHE_LIMIT {
                            cache.clear();
                        }
                        cache.insert(value.to_owned(), e164.clone());
                        return Some(e164);
                    }
                }
                // smt.normalize.normalize_phone (phonenumbers, lru-cached): the definition of E.164.
                let py = py?;
                let result = self
                    .normalize_phone
                    .call1(py, (value, self.region.clone_ref(py)));
                match result {
                    Ok(obj) => obj.extract::<String>(py).ok(),
                    Err(_) => None, // not a phone number: the Python path names the reason
                }
            }
        }
    }

    /// Applies the rules to `record` in place; false means "take the Python path".
    fn apply<'a>(
        &'a self,
        py: Option<Python<'_>>,
        record: &mut Obj<'a>,
        nonces: &[u8],
        batch: &Batch,
    ) -> bool {
        // `smt.transform.record_id`: a string's text, "" when absent or null; anything else: Python
        let record_id: String = match record.get_mut(&self.business_key) {
            None => String::new(),
            Some(Slot::Raw(raw)) if raw.get() == "null" => String::new(),
            Some(Slot::Raw(raw)) if raw.get().starts_with('"') => {
                match serde_json::from_str(raw.get()) {
                    Ok(text) => text,
                    Err(_) => return false,
                }
            }
            Some(_) => return false,
        };
        let mut next_nonce = 0;
        for rule in &self.rules {
            let node = match parent(record, &rule.parents) {
                Parent::Found(node) => node,
                Parent::Absent => continue,
                Parent::WrongShape => return false, // WRONG_TYPE, named by Python
            };
            let Some(slot) = node.get_mut(&rule.leaf) else {
                continue;
            };
            if rule.encrypt == Encrypt::None && !rule.index {
                if rule.remove {
                    node.remove(&rule.leaf); // drop
                }
                continue; // keep
            }
            // Only a JSON string is protected here; null and other types are Python's to judge
            // (nullable, NULL_PII, WRONG_TYPE).
            let text: String = match slot {
                Slot::Raw(raw) if raw.get().starts_with('"') => {
                    match serde_json::from_str(raw.get()) {
                        Ok(text) => text,
                        Err(_) => return false,
                    }
                }
                _ => return false,
            };
            let Some(plain) = self.normalize(py, rule, &text) else {
                return false;
            };
            if rule.index {
                node.set(
                    &rule.index_name,
                    Slot::Token(self.blind_index(&plain, rule.normalize)),
                );
                if let Some((prefix, macs)) = &self.next_index {
                    node.set(
                        &rule.next_index_name,
                        Slot::Token(hex_index(prefix, macs, &plain, rule.normalize)),
                    );
                }
            }
            if rule.encrypt != Encrypt::None {
                let nonce = if rule.encrypt == Encrypt::Random {
                    next_nonce += NONCE_BYTES;
                    &nonces[next_nonce - NONCE_BYTES..next_nonce]
                } else {
                    &[][..]
                };
                let Some(sealed) = self.seal(rule, &plain, nonce, batch, &record_id) else {
                    return false;
                };
                node.set(&rule.leaf, Slot::Token(sealed));
            } else if rule.remove {
                node.remove(&rule.leaf);
            }
        }
        true
    }
}

#[pymethods]
impl RecordSealer {
    /// rules: list of (parents, leaf, encrypt "g"|"s"|"", index, remove, normalize "email"|"phone"|"",
    /// associated data, envelope prefix), in policy order; array-free paths only.
    #[new]
    #[pyo3(signature = (rules, siv_key, index_id, index_keys, business_key, normalize_phone, region, thresholds, next_index_id = "", next_index_keys = vec![]))]
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::type_complexity)]
    fn new(
        py: Python<'_>,
        rules: Vec<(
            Vec<String>,
            String,
            String,
            bool,
            bool,
            String,
            Vec<u8>,
            String,
        )>,
        siv_key: &[u8],
        index_id: &str,
        index_keys: Vec<Vec<u8>>,
        business_key: String,
        normalize_phone: Py<PyAny>,
        region: &str,
        thresholds: (usize, usize),
        next_index_id: &str,
        next_index_keys: Vec<Vec<u8>>,
    ) -> PyResult<Self> {
        let phone_region = region.parse::<Region>().ok();
        let region = pyo3::types::PyString::new(py, region).into_any().unbind();
        let siv_key: [u8; 64] = siv_key
            .try_into()
            .map_err(|_| PyValueError::new_err("siv_key must be 64 bytes"))?;
        let macs = |keys: &[Vec<u8>]| -> PyResult<[Hmac<Sha256>; 3]> {
            // smt.envelope.BlindIndexer.KINDS order: email, phone, none; indexed by Normalize: None, Email, Phone
            let mac = |i: usize| {
                keys.get(i)
                    .and_then(|k| <Hmac<Sha256> as Mac>::new_from_slice(k).ok())
                    .ok_or_else(|| {
                        PyValueError::new_err("index keys: three HMAC keys (email, phone, none)")
                    })
            };
            Ok([mac(2)?, mac(0)?, mac(1)?])
        };
        let index_macs = macs(&index_keys)?;
        let next_index = if next_index_id.is_empty() {
            None
        } else {
            Some((format!("{next_index_id}."), macs(&next_index_keys)?))
        };
        let mut compiled = Vec::with_capacity(rules.len());
        for (parents, leaf, encrypt, index, remove, normalize, ad, prefix) in rules {
            let encrypt = match encrypt.as_str() {
                "g" => Encrypt::Random,
                "s" => Encrypt::Deterministic,
                "" => Encrypt::None,
                other => return Err(PyValueError::new_err(format!("unknown encrypt {other:?}"))),
            };
            let normalize = match normalize.as_str() {
                "email" => Normalize::Email,
                "phone" => Normalize::Phone,
                "" | "none" => Normalize::None,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown normalize {other:?}"
                    )))
                }
            };
            let index_name = format!("{leaf}_bidx");
            let next_index_name = format!("{leaf}_bidx_next");
            compiled.push(Rule {
                parents,
                leaf,
                index_name,
                next_index_name,
                encrypt,
                index,
                remove,
                normalize,
                ad,
                prefix,
            });
        }
        let random_fields = compiled
            .iter()
            .filter(|r| r.encrypt == Encrypt::Random)
            .count();
        Ok(RecordSealer {
            rules: compiled,
            siv_key,
            index_prefix: format!("{index_id}."),
            index_macs,
            next_index,
            business_key,
            normalize_phone,
            region,
            phone_region,
            phone_cache: Mutex::new(HashMap::new()),
            random_fields,
            thresholds,
        })
    }

    /// The `_secure` value for a CDC value, or None when the Python path must decide.
    fn transform<'py>(
        &self,
        py: Python<'py>,
        value: &[u8],
        salt: &[u8],
        batch_key: &[u8],
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let batch = Batch::new(salt, batch_key)?;
        let out = self
            .seal_record(Some(py), value, &batch)
            .map_err(|e| PyValueError::new_err(format!("getrandom: {e}")))?;
        Ok(out.map(|out| PyBytes::new(py, &out)))
    }

    /// `transform` of many values at once, on `threads` threads without the GIL (a batch of the
    /// processor). None where the Python path must decide, as `transform`, and also where a phone
    /// number needs Python's phonenumbers: `transform` of that value then settles it.
    #[pyo3(signature = (values, threads, salt, batch_key))]
    fn transform_many<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Bound<'py, PyBytes>>,
        threads: usize,
        salt: &[u8],
        batch_key: &[u8],
    ) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
        let batch = Batch::new(salt, batch_key)?;
        let batch = &batch;
        let slices: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let chunk = slices
            .len()
            .div_ceil(threads.max(1))
            .max(MIN_RECORDS_PER_THREAD);
        let sealed: Result<Vec<Option<Vec<u8>>>, getrandom::Error> = py.allow_threads(|| {
            let seal = |part: &[&[u8]]| {
                part.iter()
                    .map(|v| self.seal_record(None, v, batch))
                    .collect::<Result<Vec<_>, _>>()
            };
            let mut parts = slices.chunks(chunk);
            let first = parts.next().unwrap_or_default();
            std::thread::scope(|scope| {
                // the calling thread takes the first part, one thread each the others
                let workers: Vec<_> = parts.map(|part| scope.spawn(move || seal(part))).collect();
                let mut all = seal(first)?;
                for worker in workers {
                    all.extend(worker.join().expect("a transform thread panicked")?);
                }
                Ok(all)
            })
        });
        let sealed = sealed.map_err(|e| PyValueError::new_err(format!("getrandom: {e}")))?;
        Ok(sealed
            .into_iter()
            .map(|out| out.map(|out| PyBytes::new(py, &out)))
            .collect())
    }
}

impl RecordSealer {
    fn seal_record(
        &self,
        py: Option<Python<'_>>,
        value: &[u8],
        batch: &Batch,
    ) -> Result<Option<Vec<u8>>, getrandom::Error> {
        if needs_python_reading(value) {
            return Ok(None);
        }
        // Not an object, not UTF-8, not JSON: the Python path names the DLQ reason.
        let Ok(mut record) = serde_json::from_slice::<Obj>(value) else {
            return Ok(None);
        };
        // One getrandom call per record for all its random nonces; no buffer kept across calls,
        // so a forked process can never hand out its parent's nonces.
        let mut nonces = vec![0u8; NONCE_BYTES * self.random_fields];
        getrandom::getrandom(&mut nonces)?;
        if !self.apply(py, &mut record, &nonces, batch) {
            return Ok(None);
        }
        if !record.clean(0, self.thresholds) {
            return Ok(None); // maybe plaintext PII outside the policy, or ambiguous: Python decides
        }
        let mut out = Vec::with_capacity(value.len() + 64 * self.rules.len());
        record.write(&mut out);
        Ok(Some(out))
    }
}

/// One envelope (`smt.envelope`): `g` under the batch key, bound to the record id; `s` by AES-SIV.
fn seal_with(
    rule: &Rule,
    plain: &str,
    nonce: &[u8],
    batch: &Batch,
    record_id: &str,
    siv_key: &[u8; 64],
) -> Option<String> {
    let payload = match rule.encrypt {
        Encrypt::Random => {
            let mut ad = Vec::with_capacity(rule.ad.len() + record_id.len());
            ad.extend_from_slice(&rule.ad);
            ad.extend_from_slice(record_id.as_bytes());
            let sealed = batch
                .gcm
                .encrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: plain.as_bytes(),
                        aad: &ad,
                    },
                )
                .ok()?;
            let mut payload = Vec::with_capacity(SALT_BYTES + NONCE_BYTES + sealed.len());
            payload.extend_from_slice(&batch.salt);
            payload.extend_from_slice(nonce);
            payload.extend_from_slice(&sealed);
            payload
        }
        Encrypt::Deterministic => {
            let mut siv = Aes256Siv::new(siv_key.into());
            siv.encrypt([&rule.ad], plain.as_bytes()).ok()?
        }
        Encrypt::None => return None,
    };
    let mut out = String::with_capacity(rule.prefix.len() + payload.len() * 4 / 3 + 4);
    out.push_str(&rule.prefix);
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    Some(out)
}

/// E.164 of a plain phone number as the native path computes it, or None (Python decides).
#[pyfunction]
fn plain_phone(value: &str, region: &str) -> Option<String> {
    plain_phone_e164(value, region.parse::<Region>().ok()?)
}

/// A `g` envelope with a given nonce: test vectors only (the processor's nonces are random).
#[pyfunction]
fn gcm_envelope(
    prefix: &str,
    salt: &[u8],
    batch_key: &[u8],
    nonce: &[u8],
    ad: &[u8],
    plaintext: &str,
) -> PyResult<String> {
    let batch = Batch::new(salt, batch_key)?;
    if nonce.len() != NONCE_BYTES {
        return Err(PyValueError::new_err("nonce must be 12 bytes"));
    }
    let rule = Rule {
        parents: vec![],
        leaf: String::new(),
        index_name: String::new(),
        next_index_name: String::new(),
        encrypt: Encrypt::Random,
        index: false,
        remove: false,
        normalize: Normalize::None,
        ad: ad.to_vec(),
        prefix: prefix.to_owned(),
    };
    seal_with(&rule, plaintext, nonce, &batch, "", &[0u8; 64])
        .ok_or_else(|| PyValueError::new_err("encryption failed"))
}

/// Whether the native guard hands back text like this (tests compare it with smt.guard).
#[pyfunction]
fn is_suspicious(text: &str, thresholds: (usize, usize)) -> bool {
    suspicious(text, thresholds)
}

/// The native email normalization, or None where Python decides (tests compare the two).
#[pyfunction]
fn simple_email(value: &str) -> Option<String> {
    normalize_email(value)
}

#[pymodule]
fn smt_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // A panic message can quote the input it choked on (a phone number, a record): report only
    // where it happened. Applies to this module's Rust code alone.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("smt_native: internal panic at {place} (input withheld)");
    }));
    m.add_class::<RecordSealer>()?;
    m.add_function(wrap_pyfunction!(plain_phone, m)?)?;
    m.add_function(wrap_pyfunction!(is_suspicious, m)?)?;
    m.add_function(wrap_pyfunction!(gcm_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(simple_email, m)?)?;
    Ok(())
}
