//! The record value format (format 2): compact, self-describing, with named struct fields.
//!
//! Every value starts with a tag byte, so any stored value can be walked, skipped or shown as
//! JSON without its Rust type. A struct is written as `STRUCT`, the 64-bit *shape* of its
//! field names, the field count and the values in order; the names themselves are kept once
//! per store in a shape registry (`meta`), so a record carries its field names at a cost of
//! eight bytes. Because fields are matched by name when read, a record type may gain fields
//! (`Option` or `#[serde(default)]`), lose fields or reorder them without touching stored
//! bytes. Enum variants are written by name. The shape of a list of names is a fixed function
//! of the names (FNV-1a, below), so two processes agree on it without coordination and a
//! cached shape is never wrong.
//!
//! Tags: `0x00..=0x3F` small unsigned integers inline; `0x40` unsigned, `0x41` negative
//! (`-1 - n`), both LEB128; `0x42`/`0x43` false/true; `0x44` null (`None`); `0x45` unit;
//! `0x46`/`0x47` f32/f64 little-endian; `0x48` string and `0x49` bytes (LEB128 length);
//! `0x4A` sequence and `0x4B` map (LEB128 count); `0x4C` struct (shape as u64 LE, count,
//! values); `0x4D` enum variant (name, value); `0x4E` unit variant (name); `0x4F`/`0x50`
//! u128/i128 little-endian; `0x60..=0x7F` strings of 0 to 31 bytes inline.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

const INLINE_MAX: u8 = 0x3F;
const T_UINT: u8 = 0x40;
const T_NINT: u8 = 0x41;
const T_FALSE: u8 = 0x42;
const T_TRUE: u8 = 0x43;
const T_NULL: u8 = 0x44;
const T_UNIT: u8 = 0x45;
const T_F32: u8 = 0x46;
const T_F64: u8 = 0x47;
const T_STR: u8 = 0x48;
const T_BYTES: u8 = 0x49;
const T_SEQ: u8 = 0x4A;
const T_MAP: u8 = 0x4B;
const T_STRUCT: u8 = 0x4C;
const T_VARIANT: u8 = 0x4D;
const T_UNIT_VARIANT: u8 = 0x4E;
const T_U128: u8 = 0x4F;
const T_I128: u8 = 0x50;
const T_SHORT_STR: u8 = 0x60;
const SHORT_STR_MAX: usize = 31;

/// Deepest nesting accepted when reading, so hostile bytes cannot exhaust the stack.
const MAX_DEPTH: u32 = 96;

/// Why a value could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

impl ser::Error for FormatError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FormatError(msg.to_string())
    }
}

impl de::Error for FormatError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FormatError(msg.to_string())
    }
}

type Res<T> = Result<T, FormatError>;

// Error paths are kept out of line, so the code that reads well-formed values stays small
// (the hot paths of a lookup fit the instruction cache better).
#[cold]
#[inline(never)]
fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(FormatError(msg.into()))
}

#[cold]
#[inline(never)]
fn over_limit<T>(limit: usize) -> Res<T> {
    err(format!("record is larger than the {limit}-byte limit"))
}

#[cold]
#[inline(never)]
fn ends_early() -> FormatError {
    FormatError("value ends early".into())
}

#[cold]
#[inline(never)]
fn past_end(n: usize, left: usize) -> FormatError {
    FormatError(format!(
        "a length of {n} runs past the end ({left} bytes left)"
    ))
}

#[cold]
#[inline(never)]
fn not_utf8(what: &str) -> FormatError {
    FormatError(format!("{what} is not UTF-8"))
}

/// The field names of a struct, as registered.
pub type Shape = Arc<[Box<str>]>;

/// The shape id of a list of field names: FNV-1a 64 over each name's length (u32 LE) and
/// bytes. Part of the file format: never change it.
pub fn shape_id<S: AsRef<str>>(names: &[S]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for n in names {
        let n = n.as_ref().as_bytes();
        for b in u32::try_from(n.len()).unwrap_or(u32::MAX).to_le_bytes() {
            eat(b);
        }
        for &b in n {
            eat(b);
        }
    }
    h
}

/// Encodes a shape's names for the registry: count, then each name (LEB128 length, bytes).
pub fn encode_shape<S: AsRef<str>>(names: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, names.len() as u64);
    for n in names {
        let n = n.as_ref().as_bytes();
        put_varint(&mut out, n.len() as u64);
        out.extend_from_slice(n);
    }
    out
}

/// Decodes a registry entry and checks that it has the id it is stored under.
///
/// # Errors
/// When the bytes are not a shape or carry another id.
pub fn decode_shape(id: u64, bytes: &[u8]) -> Res<Shape> {
    let mut r = Reader::new(bytes);
    let n = r.varint()?;
    if n > bytes.len() as u64 {
        return err("shape entry is truncated");
    }
    let mut names = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = r.varint()?;
        let raw = r.take(len)?;
        let name =
            std::str::from_utf8(raw).map_err(|_| FormatError("shape name is not UTF-8".into()))?;
        names.push(Box::<str>::from(name));
    }
    if !r.is_empty() {
        return err("shape entry has trailing bytes");
    }
    if shape_id(&names) != id {
        return err(format!("shape entry {id:016x} does not match its names"));
    }
    Ok(names.into())
}

// Shapes are content-addressed, so one cache serves every store in the process.
fn cache() -> &'static RwLock<HashMap<u64, Shape>> {
    static CACHE: OnceLock<RwLock<HashMap<u64, Shape>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The cached shape with this id, if known in this process.
pub fn cached_shape(id: u64) -> Option<Shape> {
    cache()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned()
}

/// Every shape this process has cached.
pub(crate) fn cached_shapes() -> Vec<(u64, Shape)> {
    cache()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, s)| (*id, s.clone()))
        .collect()
}

/// Remembers a shape (its id must be `shape_id` of its names).
pub fn remember_shape(id: u64, shape: Shape) {
    cache()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, shape);
}

/// Looks up shapes the cache does not know (the store reads its registry).
pub type Resolve<'r> = &'r dyn Fn(u64) -> Res<Shape>;

/// Whether shape `id` names exactly `fields`, in order (a Rust struct's field list), so its
/// values can be handed over by position. The answer is kept per thread for each pair:
/// shapes are content-addressed and a struct's field list is a `'static` constant.
pub(crate) fn positional(
    id: u64,
    fields: &'static [&'static str],
    resolve: Resolve<'_>,
) -> Res<bool> {
    type Known = Vec<(u64, usize, bool)>;
    thread_local! {
        static KNOWN: std::cell::RefCell<Known> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let at = fields.as_ptr() as usize;
    let known = KNOWN.with(|k| {
        k.borrow()
            .iter()
            .find(|(i, f, _)| *i == id && *f == at)
            .map(|(_, _, same)| *same)
    });
    if let Some(same) = known {
        return Ok(same);
    }
    let same = if cached_shape(id).is_none() && shape_id(fields) == id {
        // Content-addressed: the id is that of the type's own list, so the shape is that
        // list, registered or not (a store whose registry was lost still reads).
        remember_shape(id, fields.iter().map(|n| Box::<str>::from(*n)).collect());
        true
    } else {
        let shape = lookup(id, resolve)?;
        shape.len() == fields.len() && shape.iter().zip(fields).all(|(a, b)| **a == **b)
    };
    KNOWN.with(|k| {
        let mut k = k.borrow_mut();
        // A handful of record types are read in a process; a bound keeps a pathological
        // stream of shapes from growing it.
        if k.len() >= 256 {
            k.clear();
        }
        k.push((id, at, same));
    });
    Ok(same)
}

fn lookup(id: u64, resolve: Resolve<'_>) -> Res<Shape> {
    if let Some(s) = cached_shape(id) {
        return Ok(s);
    }
    let s = resolve(id)?;
    remember_shape(id, s.clone());
    Ok(s)
}

/// The shapes a value used, with their names, for the store to register.
#[derive(Debug, Default)]
pub struct UsedShapes(pub Vec<(u64, Names)>);

/// A struct's field names as written: `'static` constants, shared.
pub type Names = Arc<[&'static str]>;

impl UsedShapes {
    fn add(&mut self, id: u64, names: &Names) {
        if !self.0.iter().any(|(i, _)| *i == id) {
            self.0.push((id, names.clone()));
        }
    }
}

/// The shape id of a struct's field names as the encoder met them, with the names shared.
/// Kept per thread for each list of names: a Rust struct writes its fields from `'static`
/// constants, so the same list comes back with the same addresses on every write of its
/// type, and comparing the addresses (and lengths) spares hashing every name's bytes again.
/// Equal addresses and lengths of `'static` text are the same text, so a hit is never wrong.
fn known_shape(names: &[&'static str]) -> (u64, Names) {
    type Known = Vec<(u64, Names)>;
    thread_local! {
        static KNOWN: std::cell::RefCell<Known> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let same = |known: &[&'static str]| {
        known.len() == names.len()
            && known
                .iter()
                .zip(names)
                .all(|(a, b)| a.as_ptr() == b.as_ptr() && a.len() == b.len())
    };
    let hit = KNOWN.with(|k| {
        k.borrow()
            .iter()
            .find(|(_, known)| same(known))
            .map(|(id, known)| (*id, known.clone()))
    });
    if let Some(hit) = hit {
        return hit;
    }
    let id = shape_id(names);
    let shared: Names = names.into();
    KNOWN.with(|k| {
        let mut k = k.borrow_mut();
        // A program writes a handful of struct types; a bound keeps a stream of types with
        // optional fields skipped in many combinations from growing it without end.
        if k.len() >= 64 {
            k.clear();
        }
        k.push((id, shared.clone()));
    });
    (id, shared)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the encoding of `value` to `out`, noting the struct shapes it used in `shapes`.
///
/// # Errors
/// When the value cannot be represented (a map key that fails, a custom `Serialize` error).
pub fn to_vec<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    shapes: &mut UsedShapes,
) -> Res<()> {
    to_vec_within(value, out, shapes, usize::MAX)
}

/// [`to_vec`], stopping as soon as `out` would hold more than `limit` bytes: a text or byte
/// string is measured before it is copied, and the length is checked after each field and
/// element, so a value far over the limit is never copied whole. What stops under the limit
/// may end a few bytes over it (a count made longer at the end); the caller checks the
/// length again.
///
/// # Errors
/// As [`to_vec`]; a message naming `limit` when the value does not fit.
pub(crate) fn to_vec_within<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    shapes: &mut UsedShapes,
    limit: usize,
) -> Res<()> {
    // The list of field names is kept per thread between writes: a fresh one grew (and was
    // copied) three times for a record of 14 fields.
    thread_local! {
        static NAMES: std::cell::Cell<Vec<&'static str>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut names = NAMES.try_with(std::cell::Cell::take).unwrap_or_default();
    names.clear();
    let mut enc = Encoder {
        out,
        names,
        shapes,
        limit,
    };
    let done = value.serialize(&mut enc);
    let names = std::mem::take(&mut enc.names);
    // A record with hundreds of fields does not leave its list's room behind.
    if names.capacity() <= 256 {
        let _ = NAMES.try_with(|n| n.set(names));
    }
    done
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    // Field names of the structs being written, innermost last.
    names: Vec<&'static str>,
    shapes: &'a mut UsedShapes,
    // The most `out` may hold (see `to_vec_within`).
    limit: usize,
}

impl Encoder<'_> {
    fn uint(&mut self, v: u64) {
        if v <= u64::from(INLINE_MAX) {
            self.out.push(v as u8);
        } else {
            self.out.push(T_UINT);
            put_varint(self.out, v);
        }
    }

    fn int(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else {
            self.out.push(T_NINT);
            put_varint(self.out, !(v as u64));
        }
    }

    /// Refuses to grow `out` by `more` bytes past the limit.
    #[inline]
    fn room(&self, more: usize) -> Res<()> {
        if self.out.len().saturating_add(more) > self.limit {
            return over_limit(self.limit);
        }
        Ok(())
    }

    fn str(&mut self, s: &str) -> Res<()> {
        self.room(s.len())?;
        if s.len() <= SHORT_STR_MAX {
            self.out.push(T_SHORT_STR + s.len() as u8);
        } else {
            self.out.push(T_STR);
            put_varint(self.out, s.len() as u64);
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn name(&mut self, s: &str) {
        put_varint(self.out, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }
}

/// A sequence or map whose length was not given up front: written to a scratch buffer and
/// copied behind its count.
struct Counted<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    start: usize,
    count: u64,
    // Whether the count was written up front (the length was known).
    known: bool,
}

impl<'e, 'a> Counted<'e, 'a> {
    fn new(enc: &'e mut Encoder<'a>, tag: u8, len: Option<usize>) -> Self {
        enc.out.push(tag);
        let start = enc.out.len();
        if let Some(n) = len {
            put_varint(enc.out, n as u64);
        }
        Counted {
            enc,
            start,
            count: 0,
            known: len.is_some(),
        }
    }

    fn finish(self) -> Res<()> {
        if self.known {
            // The declared length must match what was written.
            let mut r = Reader::new(&self.enc.out[self.start..]);
            let declared = r.varint()?;
            if declared != self.count {
                return err(format!(
                    "a sequence declared {declared} elements but wrote {}",
                    self.count
                ));
            }
            return Ok(());
        }
        let body = self.enc.out.split_off(self.start);
        put_varint(self.enc.out, self.count);
        self.enc.out.extend_from_slice(&body);
        Ok(())
    }
}

struct StructEnc<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    shape_at: usize,
    names_from: usize,
}

impl<'e, 'a> StructEnc<'e, 'a> {
    fn new(enc: &'e mut Encoder<'a>) -> Self {
        enc.out.push(T_STRUCT);
        let shape_at = enc.out.len();
        // Shape (8 bytes) and count are patched in at the end; the count's one byte (fewer
        // than 128 fields) is kept free here, a longer count is made room for then.
        enc.out.extend_from_slice(&[0; 9]);
        let names_from = enc.names.len();
        StructEnc {
            enc,
            shape_at,
            names_from,
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Res<()> {
        self.enc.names.push(key);
        value.serialize(&mut *self.enc)?;
        self.enc.room(0)
    }

    fn finish(self) -> Res<()> {
        let names = &self.enc.names[self.names_from..];
        let (id, shared) = known_shape(names);
        self.enc.shapes.add(id, &shared);
        let n = names.len() as u64;
        self.enc.names.truncate(self.names_from);
        self.enc.out[self.shape_at..self.shape_at + 8].copy_from_slice(&id.to_le_bytes());
        // The count, after the shape: in the byte kept for it, or in its place when longer.
        let at = self.shape_at + 8;
        if n < 0x80 {
            self.enc.out[at] = n as u8;
        } else {
            let mut count = Vec::with_capacity(3);
            put_varint(&mut count, n);
            self.enc.out.splice(at..=at, count);
        }
        Ok(())
    }
}

impl<'e, 'a> ser::Serializer for &'e mut Encoder<'a> {
    type Ok = ();
    type Error = FormatError;
    type SerializeSeq = Counted<'e, 'a>;
    type SerializeTuple = Counted<'e, 'a>;
    type SerializeTupleStruct = Counted<'e, 'a>;
    type SerializeTupleVariant = Counted<'e, 'a>;
    type SerializeMap = Counted<'e, 'a>;
    type SerializeStruct = StructEnc<'e, 'a>;
    type SerializeStructVariant = StructEnc<'e, 'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Res<()> {
        self.out.push(if v { T_TRUE } else { T_FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Res<()> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Res<()> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Res<()> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Res<()> {
        self.int(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Res<()> {
        match i64::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) => {
                self.out.push(T_I128);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Res<()> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Res<()> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Res<()> {
        self.uint(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Res<()> {
        self.uint(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Res<()> {
        match u64::try_from(v) {
            Ok(v) => self.uint(v),
            Err(_) => {
                self.out.push(T_U128);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Res<()> {
        self.out.push(T_F32);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Res<()> {
        self.out.push(T_F64);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Res<()> {
        let mut buf = [0u8; 4];
        self.str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Res<()> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Res<()> {
        self.room(v.len())?;
        self.out.push(T_BYTES);
        put_varint(self.out, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Res<()> {
        self.out.push(T_NULL);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res<()> {
        self.out.push(T_UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Res<()> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
    ) -> Res<()> {
        self.out.push(T_UNIT_VARIANT);
        self.name(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Res<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Res<()> {
        self.out.push(T_VARIANT);
        self.name(variant);
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Res<Self::SerializeSeq> {
        Ok(Counted::new(self, T_SEQ, len))
    }
    fn serialize_tuple(self, len: usize) -> Res<Self::SerializeTuple> {
        Ok(Counted::new(self, T_SEQ, Some(len)))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Res<Self::SerializeTupleStruct> {
        Ok(Counted::new(self, T_SEQ, Some(len)))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> Res<Self::SerializeTupleVariant> {
        self.out.push(T_VARIANT);
        self.name(variant);
        Ok(Counted::new(self, T_SEQ, Some(len)))
    }
    fn serialize_map(self, len: Option<usize>) -> Res<Self::SerializeMap> {
        Ok(Counted::new(self, T_MAP, len))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Res<Self::SerializeStruct> {
        Ok(StructEnc::new(self))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Res<Self::SerializeStructVariant> {
        self.out.push(T_VARIANT);
        self.name(variant);
        Ok(StructEnc::new(self))
    }
}

impl ser::SerializeSeq for Counted<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        self.count += 1;
        value.serialize(&mut *self.enc)?;
        self.enc.room(0)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeTuple for Counted<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Counted<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Counted<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeMap for Counted<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Res<()> {
        self.count += 1;
        key.serialize(&mut *self.enc)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        value.serialize(&mut *self.enc)?;
        self.enc.room(0)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeStruct for StructEnc<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Res<()> {
        self.field(key, value)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for StructEnc<'_, '_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Res<()> {
        self.field(key, value)
    }
    fn end(self) -> Res<()> {
        self.finish()
    }
}

/// A cursor over encoded bytes.
#[derive(Clone, Copy)]
struct Reader<'de> {
    input: &'de [u8],
}

impl<'de> Reader<'de> {
    fn new(input: &'de [u8]) -> Self {
        Reader { input }
    }

    fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn byte(&mut self) -> Res<u8> {
        let (&b, rest) = self.input.split_first().ok_or_else(ends_early)?;
        self.input = rest;
        Ok(b)
    }

    fn peek(&self) -> Res<u8> {
        self.input.first().copied().ok_or_else(ends_early)
    }

    fn take(&mut self, n: u64) -> Res<&'de [u8]> {
        let n = usize::try_from(n).map_err(|_| FormatError("length too large".into()))?;
        if n > self.input.len() {
            return Err(past_end(n, self.input.len()));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let b = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn varint(&mut self) -> Res<u64> {
        // One byte (values below 128) is the common case.
        if let Some((&b, rest)) = self.input.split_first()
            && b < 0x80
        {
            self.input = rest;
            return Ok(u64::from(b));
        }
        self.long_varint()
    }

    fn long_varint(&mut self) -> Res<u64> {
        let mut v: u64 = 0;
        for (i, &b) in self.input.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return err("integer overflows 64 bits");
            }
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return err("integer has a non-minimal encoding");
                }
                self.input = &self.input[i + 1..];
                return Ok(v);
            }
        }
        // Ten bytes always end the walk above; fewer ran out.
        Err(ends_early())
    }

    /// A count of items that each take at least `min` bytes, checked against what is left.
    fn count(&mut self, min: usize) -> Res<usize> {
        let n = self.varint()?;
        if n > (self.input.len() / min.max(1)) as u64 {
            return err(format!("a count of {n} runs past the end"));
        }
        Ok(n as usize)
    }

    fn name(&mut self) -> Res<&'de str> {
        let len = self.varint()?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map_err(|_| not_utf8("a name"))
    }
}

/// Decodes `T` from bytes written by [`to_vec`]; `resolve` finds shapes not yet cached.
/// Trailing bytes are an error.
///
/// # Errors
/// When the bytes are malformed or do not fit `T`.
pub fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8], resolve: Resolve<'_>) -> Res<T> {
    let mut d = Decoder {
        r: Reader::new(bytes),
        resolve,
        depth: 0,
    };
    let value = T::deserialize(&mut d)?;
    if !d.r.is_empty() {
        return err(format!("{} trailing bytes", d.r.input.len()));
    }
    Ok(value)
}

/// Walks one value and checks that it is well formed (shapes included), without a type.
///
/// # Errors
/// When the bytes are malformed.
pub fn validate(bytes: &[u8], resolve: Resolve<'_>) -> Res<()> {
    let mut d = Decoder {
        r: Reader::new(bytes),
        resolve,
        depth: 0,
    };
    d.skip()?;
    if !d.r.is_empty() {
        return err(format!("{} trailing bytes", d.r.input.len()));
    }
    Ok(())
}

/// The field names a struct type declares to serde for reading (renamed names and aliases
/// included); `None` for a type that is not read as a struct (a map, an enum, a newtype, or
/// a struct with a flattened field, which serde reads as a map).
pub(crate) fn declared_fields<T: de::DeserializeOwned>() -> Option<&'static [&'static str]> {
    /// A deserializer that notes the field list `T` asks for and reads nothing.
    struct Probe(Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = FormatError;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Res<V::Value> {
            Err(FormatError(String::new()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Res<V::Value> {
            self.0 = Some(fields);
            Err(FormatError(String::new()))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// The shape id of the struct a value holds; `None` when it holds no struct.
pub(crate) fn struct_shape(value: &[u8]) -> Option<u64> {
    match value {
        [T_STRUCT, id @ ..] => Some(u64::from_le_bytes(id.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// A field of a stored struct: its name and its value's bytes, as stored.
pub(crate) type StoredField<'a> = (Box<str>, &'a [u8]);

/// The fields of the struct `value` holds whose names `keep` accepts, each with its value's
/// bytes as stored; none when the value holds no struct.
///
/// # Errors
/// When the bytes are malformed.
pub(crate) fn struct_fields<'a>(
    value: &'a [u8],
    resolve: Resolve<'_>,
    keep: impl Fn(&str) -> bool,
) -> Res<Vec<StoredField<'a>>> {
    let mut d = Decoder {
        r: Reader::new(value),
        resolve,
        depth: 0,
    };
    if d.r.peek()? != T_STRUCT {
        return Ok(Vec::new());
    }
    d.r.byte()?;
    let (shape, _) = d.struct_header()?;
    let mut out = Vec::new();
    for name in shape.iter() {
        let rest = d.r.input;
        d.skip()?;
        if keep(name) {
            out.push((name.clone(), &rest[..rest.len() - d.r.input.len()]));
        }
    }
    Ok(out)
}

/// `value`, a struct written by [`to_vec`], with the fields of `extra` whose names it does not
/// hold added after its own. Returns the new value, and the id and names of its shape for
/// the store's registry.
///
/// # Errors
/// When `value` is not such a struct, or its shape is unknown.
pub(crate) fn with_fields(
    value: &[u8],
    extra: &[StoredField<'_>],
    resolve: Resolve<'_>,
) -> Res<(Vec<u8>, u64, Shape)> {
    let mut r = Reader::new(value);
    if r.byte()? != T_STRUCT {
        return err("the value is not a struct");
    }
    let id = u64::from_le_bytes(r.array::<8>()?);
    let n = r.count(1)?;
    let own = lookup(id, resolve)?;
    if own.len() != n {
        return err(format!(
            "struct of shape {id:016x} holds {n} values for {} names",
            own.len()
        ));
    }
    let added: Vec<&StoredField<'_>> = extra
        .iter()
        .filter(|(name, _)| !own.contains(name))
        .collect();
    let names: Shape = own
        .iter()
        .cloned()
        .chain(added.iter().map(|(name, _)| name.clone()))
        .collect();
    let new_id = shape_id(&names);
    let mut out =
        Vec::with_capacity(value.len() + 4 + added.iter().map(|(_, v)| v.len()).sum::<usize>());
    out.push(T_STRUCT);
    out.extend_from_slice(&new_id.to_le_bytes());
    put_varint(&mut out, names.len() as u64);
    // The struct's own values, then the added ones, in the order of the names.
    out.extend_from_slice(r.input);
    for (_, v) in &added {
        out.extend_from_slice(v);
    }
    remember_shape(new_id, names.clone());
    Ok((out, new_id, names))
}

/// Converts one value to JSON without knowing its type: structs become objects with their
/// field names, enum variants `{"name": value}` (unit variants a string), bytes a hex string,
/// map keys strings.
///
/// # Errors
/// When the bytes are malformed.
pub fn to_json(bytes: &[u8], resolve: Resolve<'_>) -> Res<serde_json::Value> {
    let mut d = Decoder {
        r: Reader::new(bytes),
        resolve,
        depth: 0,
    };
    let v = d.json()?;
    if !d.r.is_empty() {
        return err(format!("{} trailing bytes", d.r.input.len()));
    }
    Ok(v)
}

/// `deserialize_*` methods for integer types: a small unsigned integer (the inline tags and
/// `T_UINT`) is handed over at once, as the general walk would hand it; other tags take that
/// walk.
macro_rules! unsigned_first {
    ($($name:ident)*) => {$(
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
            match self.r.peek()? {
                tag @ 0..=INLINE_MAX => {
                    self.r.byte()?;
                    visitor.visit_u64(u64::from(tag))
                }
                T_UINT => {
                    self.r.byte()?;
                    let v = self.r.varint()?;
                    visitor.visit_u64(v)
                }
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

struct Decoder<'de, 'r> {
    r: Reader<'de>,
    resolve: Resolve<'r>,
    depth: u32,
}

impl<'de> Decoder<'de, '_> {
    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// A struct's shape id and value count.
    fn struct_start(&mut self) -> Res<(u64, usize)> {
        let id = u64::from_le_bytes(self.r.array::<8>()?);
        Ok((id, self.r.count(1)?))
    }

    /// The names of shape `id`, which must number `n`.
    fn shape_of(&self, id: u64, n: usize) -> Res<Shape> {
        let shape = lookup(id, self.resolve)?;
        if shape.len() != n {
            return err(format!(
                "struct of shape {id:016x} holds {n} values for {} names",
                shape.len()
            ));
        }
        Ok(shape)
    }

    fn struct_header(&mut self) -> Res<(Shape, usize)> {
        let (id, n) = self.struct_start()?;
        Ok((self.shape_of(id, n)?, n))
    }

    /// Skips one value.
    fn skip(&mut self) -> Res<()> {
        self.enter()?;
        let tag = self.r.byte()?;
        match tag {
            0..=INLINE_MAX | T_FALSE | T_TRUE | T_NULL | T_UNIT => {}
            T_UINT | T_NINT => {
                self.r.varint()?;
            }
            T_F32 => {
                self.r.take(4)?;
            }
            T_F64 => {
                self.r.take(8)?;
            }
            T_U128 | T_I128 => {
                self.r.take(16)?;
            }
            T_STR => {
                let n = self.r.varint()?;
                let s = self.r.take(n)?;
                std::str::from_utf8(s).map_err(|_| not_utf8("a string"))?;
            }
            T_SHORT_STR..=0x7F => {
                let s = self.r.take(u64::from(tag - T_SHORT_STR))?;
                std::str::from_utf8(s).map_err(|_| not_utf8("a string"))?;
            }
            T_BYTES => {
                let n = self.r.varint()?;
                self.r.take(n)?;
            }
            T_SEQ => {
                for _ in 0..self.r.count(1)? {
                    self.skip()?;
                }
            }
            T_MAP => {
                for _ in 0..self.r.count(2)? {
                    self.skip()?;
                    self.skip()?;
                }
            }
            T_STRUCT => {
                let (_, n) = self.struct_header()?;
                for _ in 0..n {
                    self.skip()?;
                }
            }
            T_VARIANT => {
                self.r.name()?;
                self.skip()?;
            }
            T_UNIT_VARIANT => {
                self.r.name()?;
            }
            other => return err(format!("unknown tag 0x{other:02x}")),
        }
        self.depth -= 1;
        Ok(())
    }

    fn json(&mut self) -> Res<serde_json::Value> {
        use serde_json::{Map, Value, json};
        self.enter()?;
        let tag = self.r.byte()?;
        let v = match tag {
            0..=INLINE_MAX => json!(tag),
            T_UINT => json!(self.r.varint()?),
            T_NINT => {
                let n = self.r.varint()?;
                match i64::try_from(n) {
                    Ok(n) => json!(-1 - n),
                    Err(_) => json!(-1.0 - n as f64),
                }
            }
            T_FALSE => json!(false),
            T_TRUE => json!(true),
            T_NULL | T_UNIT => Value::Null,
            T_F32 => json!(f32::from_le_bytes(self.r.array()?)),
            T_F64 => json!(f64::from_le_bytes(self.r.array()?)),
            T_U128 => json!(u128::from_le_bytes(self.r.array()?).to_string()),
            T_I128 => json!(i128::from_le_bytes(self.r.array()?).to_string()),
            T_STR | T_SHORT_STR..=0x7F => Value::String(self.str_after_tag(tag)?.to_string()),
            T_BYTES => {
                let n = self.r.varint()?;
                let b = self.r.take(n)?;
                Value::String(b.iter().map(|b| format!("{b:02x}")).collect())
            }
            T_SEQ => {
                let n = self.r.count(1)?;
                let mut out = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    out.push(self.json()?);
                }
                Value::Array(out)
            }
            T_MAP => {
                let n = self.r.count(2)?;
                let mut out = Map::new();
                for _ in 0..n {
                    let k = match self.json()? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(k, self.json()?);
                }
                Value::Object(out)
            }
            T_STRUCT => {
                let (shape, n) = self.struct_header()?;
                let mut out = Map::new();
                for name in shape.iter().take(n) {
                    out.insert(name.to_string(), self.json()?);
                }
                Value::Object(out)
            }
            T_VARIANT => {
                let name = self.r.name()?.to_string();
                let mut out = Map::new();
                out.insert(name, self.json()?);
                Value::Object(out)
            }
            T_UNIT_VARIANT => Value::String(self.r.name()?.to_string()),
            other => return err(format!("unknown tag 0x{other:02x}")),
        };
        self.depth -= 1;
        Ok(v)
    }

    /// A struct read into a Rust type whose fields are `fields`. When the stored shape names
    /// exactly those fields in that order (the usual case: the record was written by this
    /// type), the values are handed over by position, sparing serde's match of every field
    /// name; otherwise by name.
    fn visit_struct_as<V: Visitor<'de>>(
        &mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        let (id, n) = self.struct_start()?;
        if n == fields.len() && positional(id, fields, self.resolve)? {
            return visitor.visit_seq(SeqAccess {
                d: &mut *self,
                left: n,
            });
        }
        let shape = self.shape_of(id, n)?;
        visitor.visit_map(StructAccess {
            d: self,
            shape,
            next: 0,
            n,
        })
    }

    fn visit_struct_map<V: Visitor<'de>>(&mut self, visitor: V) -> Res<V::Value> {
        let (shape, n) = self.struct_header()?;
        let out = visitor.visit_map(StructAccess {
            d: self,
            shape,
            next: 0,
            n,
        })?;
        Ok(out)
    }
}

impl<'de> Decoder<'de, '_> {
    fn str_after_tag(&mut self, tag: u8) -> Res<&'de str> {
        let raw = match tag {
            T_STR => {
                let n = self.r.varint()?;
                self.r.take(n)?
            }
            T_SHORT_STR..=0x7F => self.r.take(u64::from(tag - T_SHORT_STR))?,
            other => return err(format!("expected a string, found tag 0x{other:02x}")),
        };
        std::str::from_utf8(raw).map_err(|_| not_utf8("a string"))
    }
}

struct StructAccess<'a, 'de, 'r> {
    d: &'a mut Decoder<'de, 'r>,
    shape: Shape,
    next: usize,
    n: usize,
}

impl<'de> de::MapAccess<'de> for StructAccess<'_, 'de, '_> {
    type Error = FormatError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        if self.next >= self.n {
            return Ok(None);
        }
        let name: &str = &self.shape[self.next];
        self.next += 1;
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        seed.deserialize(&mut *self.d)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.n - self.next)
    }
}

struct SeqAccess<'a, 'de, 'r> {
    d: &'a mut Decoder<'de, 'r>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de, '_> {
    type Error = FormatError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Res<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.d).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(4096))
    }
}

struct MapAccess<'a, 'de, 'r> {
    d: &'a mut Decoder<'de, 'r>,
    left: usize,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de, '_> {
    type Error = FormatError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.d).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        seed.deserialize(&mut *self.d)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(4096))
    }
}

/// A variant written as `VARIANT name value` (`unit: false`) or `UNIT_VARIANT name`.
struct EnumAccess<'a, 'de, 'r> {
    d: &'a mut Decoder<'de, 'r>,
    name: &'de str,
    unit: bool,
}

impl<'a, 'de, 'r> de::EnumAccess<'de> for EnumAccess<'a, 'de, 'r> {
    type Error = FormatError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Res<(V::Value, Self)> {
        let de: de::value::BorrowedStrDeserializer<'de, FormatError> =
            de::value::BorrowedStrDeserializer::new(self.name);
        let v = seed.deserialize(de)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for EnumAccess<'_, 'de, '_> {
    type Error = FormatError;

    fn unit_variant(self) -> Res<()> {
        if self.unit {
            return Ok(());
        }
        match self.d.r.byte()? {
            T_UNIT | T_NULL => Ok(()),
            other => err(format!("expected a unit variant, found tag 0x{other:02x}")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Res<T::Value> {
        if self.unit {
            return err(format!("variant {} holds no value", self.name));
        }
        seed.deserialize(&mut *self.d)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Res<V::Value> {
        if self.unit {
            return err(format!("variant {} holds no value", self.name));
        }
        de::Deserializer::deserialize_seq(&mut *self.d, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        if self.unit {
            return err(format!("variant {} holds no value", self.name));
        }
        de::Deserializer::deserialize_struct(&mut *self.d, "", fields, visitor)
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de, '_> {
    type Error = FormatError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.enter()?;
        let tag = self.r.byte()?;
        let out = match tag {
            0..=INLINE_MAX => visitor.visit_u64(u64::from(tag)),
            T_UINT => visitor.visit_u64(self.r.varint()?),
            T_NINT => {
                let n = self.r.varint()?;
                match i64::try_from(n) {
                    Ok(n) => visitor.visit_i64(-1 - n),
                    Err(_) => visitor.visit_i128(-1 - i128::from(n)),
                }
            }
            T_FALSE => visitor.visit_bool(false),
            T_TRUE => visitor.visit_bool(true),
            T_NULL => visitor.visit_none(),
            T_UNIT => visitor.visit_unit(),
            T_F32 => visitor.visit_f32(f32::from_le_bytes(self.r.array()?)),
            T_F64 => visitor.visit_f64(f64::from_le_bytes(self.r.array()?)),
            T_U128 => visitor.visit_u128(u128::from_le_bytes(self.r.array()?)),
            T_I128 => visitor.visit_i128(i128::from_le_bytes(self.r.array()?)),
            T_STR | T_SHORT_STR..=0x7F => {
                let s = self.str_after_tag(tag)?;
                visitor.visit_borrowed_str(s)
            }
            T_BYTES => {
                let n = self.r.varint()?;
                visitor.visit_borrowed_bytes(self.r.take(n)?)
            }
            T_SEQ => {
                let left = self.r.count(1)?;
                let v = visitor.visit_seq(SeqAccess {
                    d: &mut *self,
                    left,
                })?;
                Ok(v)
            }
            T_MAP => {
                let left = self.r.count(2)?;
                visitor.visit_map(MapAccess {
                    d: &mut *self,
                    left,
                })
            }
            T_STRUCT => self.visit_struct_map(visitor),
            T_VARIANT => {
                // Externally tagged, as JSON shows it: a map of one entry.
                let name = self.r.name()?;
                visitor.visit_map(VariantAsMap {
                    d: &mut *self,
                    name: Some(name),
                })
            }
            T_UNIT_VARIANT => visitor.visit_borrowed_str(self.r.name()?),
            other => err(format!("unknown tag 0x{other:02x}")),
        }?;
        self.depth -= 1;
        Ok(out)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        if self.r.peek()? == T_NULL {
            self.r.byte()?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.r.byte()? {
            T_UNIT | T_NULL => visitor.visit_unit(),
            other => err(format!("expected unit, found tag 0x{other:02x}")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        self.enter()?;
        let tag = self.r.byte()?;
        let out = match tag {
            T_VARIANT => {
                let name = self.r.name()?;
                visitor.visit_enum(EnumAccess {
                    d: &mut *self,
                    name,
                    unit: false,
                })
            }
            T_UNIT_VARIANT => {
                let name = self.r.name()?;
                visitor.visit_enum(EnumAccess {
                    d: &mut *self,
                    name,
                    unit: true,
                })
            }
            T_STR | T_SHORT_STR..=0x7F => {
                let name = self.str_after_tag(tag)?;
                visitor.visit_enum(EnumAccess {
                    d: &mut *self,
                    name,
                    unit: true,
                })
            }
            other => err(format!("expected an enum variant, found tag 0x{other:02x}")),
        }?;
        self.depth -= 1;
        Ok(out)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        if self.r.peek()? != T_STRUCT {
            return self.deserialize_any(visitor);
        }
        self.enter()?;
        self.r.byte()?;
        let out = self.visit_struct_as(fields, visitor)?;
        self.depth -= 1;
        Ok(out)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }

    // Scalars a record's fields are made of take a short path for their usual tags, sparing
    // the general walk; any other tag goes the general way, so what is accepted is the same.
    unsigned_first! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.r.peek()? {
            T_FALSE => {
                self.r.byte()?;
                visitor.visit_bool(false)
            }
            T_TRUE => {
                self.r.byte()?;
                visitor.visit_bool(true)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.r.peek()? {
            tag @ (T_STR | T_SHORT_STR..=0x7F) => {
                self.r.byte()?;
                let s = self.str_after_tag(tag)?;
                visitor.visit_borrowed_str(s)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.deserialize_str(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char bytes byte_buf seq tuple tuple_struct map identifier
    }
}

struct VariantAsMap<'a, 'de, 'r> {
    d: &'a mut Decoder<'de, 'r>,
    name: Option<&'de str>,
}

impl<'de> de::MapAccess<'de> for VariantAsMap<'_, 'de, '_> {
    type Error = FormatError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        match self.name.take() {
            None => Ok(None),
            Some(name) => {
                let de: de::value::BorrowedStrDeserializer<'de, FormatError> =
                    de::value::BorrowedStrDeserializer::new(name);
                seed.deserialize(de).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        seed.deserialize(&mut *self.d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    fn no_shapes(id: u64) -> Res<Shape> {
        err(format!("unknown shape {id:016x}"))
    }

    fn round<T: Serialize + for<'de> Deserialize<'de>>(v: &T) -> (Vec<u8>, T) {
        let mut out = Vec::new();
        let mut used = UsedShapes::default();
        to_vec(v, &mut out, &mut used).unwrap();
        for (id, names) in used.0 {
            remember_shape(id, names.iter().map(|n| Box::<str>::from(*n)).collect());
        }
        let back = from_slice(&out, &no_shapes).unwrap();
        (out, back)
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Count(u32),
        Pair(i64, String),
        Named { a: bool, b: Option<u8> },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        x: i64,
        tags: Vec<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Outer {
        id: u64,
        name: String,
        inner: Option<Inner>,
        kinds: Vec<Kind>,
        map: BTreeMap<u64, String>,
        hash: [u8; 4],
        f: f64,
        big: u128,
        neg: i128,
        unit: (),
    }

    fn sample() -> Outer {
        Outer {
            id: 12_345_678_901,
            name: "a name longer than thirty-one bytes, to use the long form".into(),
            inner: Some(Inner {
                x: -5,
                tags: vec!["t".into(), String::new()],
            }),
            kinds: vec![
                Kind::Plain,
                Kind::Count(7),
                Kind::Pair(i64::MIN, "p".into()),
                Kind::Named { a: true, b: None },
            ],
            map: [(1, "one".into()), (u64::MAX, "max".into())].into(),
            hash: [0, 1, 254, 255],
            f: -0.5,
            big: u128::MAX,
            neg: i128::MIN,
            unit: (),
        }
    }

    /// A type whose written field list depends on the value: each list gets its own shape,
    /// with the id of its names, whichever was written before it on this thread.
    #[test]
    fn a_struct_skipping_a_field_writes_the_shape_of_what_it_wrote() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Sparse {
            a: u8,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            b: Option<u8>,
            c: u8,
        }
        let shape_of = |v: &Sparse| {
            let mut out = Vec::new();
            let mut used = UsedShapes::default();
            to_vec(v, &mut out, &mut used).unwrap();
            let (id, names) = used.0.pop().unwrap();
            assert_eq!(u64::from_le_bytes(out[1..9].try_into().unwrap()), id);
            assert_eq!(
                out[9],
                names.len() as u8,
                "the field count follows the shape"
            );
            (id, names.to_vec())
        };
        let full = Sparse {
            a: 1,
            b: Some(2),
            c: 3,
        };
        let short = Sparse {
            a: 1,
            b: None,
            c: 3,
        };
        for _ in 0..2 {
            assert_eq!(
                shape_of(&full),
                (shape_id(&["a", "b", "c"]), vec!["a", "b", "c"])
            );
            assert_eq!(shape_of(&short), (shape_id(&["a", "c"]), vec!["a", "c"]));
        }
        assert_eq!(round(&full).1, full);
        assert_eq!(round(&short).1, short);
    }

    /// A struct of 130 fields: its count takes two bytes after the shape, and it reads back.
    #[test]
    fn a_struct_of_more_than_127_fields_round_trips() {
        struct Wide(Vec<&'static str>);
        impl Serialize for Wide {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut st = s.serialize_struct("Wide", self.0.len())?;
                for (i, name) in self.0.iter().enumerate() {
                    st.serialize_field(name, &(i as u64))?;
                }
                st.end()
            }
        }
        let names: Vec<&'static str> = (0..130)
            .map(|i| &*Box::leak(format!("f{i}").into_boxed_str()))
            .collect();
        let mut out = Vec::new();
        let mut used = UsedShapes::default();
        to_vec(&Wide(names.clone()), &mut out, &mut used).unwrap();
        assert_eq!(used.0.len(), 1);
        assert_eq!(used.0[0].0, shape_id(&names));
        assert_eq!(out[9..11], [0x82, 0x01], "130 as a two-byte count");
        let shape: Shape = names.iter().map(|n| Box::<str>::from(*n)).collect();
        remember_shape(shape_id(&names), shape);
        validate(&out, &no_shapes).unwrap();
        let json = to_json(&out, &no_shapes).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 130);
        assert_eq!(obj["f0"], 0);
        assert_eq!(obj["f129"], 129);
    }

    #[test]
    fn values_round_trip() {
        let v = sample();
        let (bytes, back) = round(&v);
        assert_eq!(back, v);
        validate(&bytes, &no_shapes).unwrap();
        let json = to_json(&bytes, &no_shapes).unwrap();
        assert_eq!(json["inner"]["tags"][0], "t");
        assert_eq!(json["kinds"][0], "Plain");
        assert_eq!(json["kinds"][1]["Count"], 7);
        assert_eq!(json["map"]["1"], "one");
    }

    #[test]
    fn a_type_may_gain_lose_and_reorder_fields() {
        #[derive(Serialize)]
        struct V1 {
            id: u64,
            gone: String,
            name: String,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct V2 {
            name: String,
            id: u64,
            added: Option<u32>,
            #[serde(default)]
            count: u8,
        }
        let (bytes, _) = {
            let mut out = Vec::new();
            let mut used = UsedShapes::default();
            to_vec(
                &V1 {
                    id: 3,
                    gone: "x".into(),
                    name: "n".into(),
                },
                &mut out,
                &mut used,
            )
            .unwrap();
            for (id, names) in used.0 {
                remember_shape(id, names.iter().map(|n| Box::<str>::from(*n)).collect());
            }
            (out, ())
        };
        let v2: V2 = from_slice(&bytes, &no_shapes).unwrap();
        assert_eq!(
            v2,
            V2 {
                name: "n".into(),
                id: 3,
                added: None,
                count: 0
            }
        );
    }

    #[test]
    fn values_go_by_position_only_when_the_stored_shape_is_the_types_own() {
        #[derive(Serialize)]
        struct Written {
            a: u64,
            b: String,
            c: bool,
        }
        // The same names in another order, and as many other names: both read by name.
        #[derive(Debug, Deserialize, PartialEq)]
        struct Reordered {
            c: bool,
            a: u64,
            b: String,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Renamed {
            #[serde(default)]
            x: u64,
            b: String,
            #[serde(default)]
            z: bool,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Same {
            a: u64,
            b: String,
            c: bool,
        }
        let mut bytes = Vec::new();
        let mut used = UsedShapes::default();
        let w = Written {
            a: 7,
            b: "bee".into(),
            c: true,
        };
        to_vec(&w, &mut bytes, &mut used).unwrap();
        for (id, names) in used.0 {
            remember_shape(id, names.iter().map(|n| Box::<str>::from(*n)).collect());
        }
        // Twice each: the second read uses the remembered answer.
        for _ in 0..2 {
            let r: Reordered = from_slice(&bytes, &no_shapes).unwrap();
            assert_eq!((r.a, r.b.as_str(), r.c), (7, "bee", true));
            let n: Renamed = from_slice(&bytes, &no_shapes).unwrap();
            assert_eq!((n.x, n.b.as_str(), n.z), (0, "bee", false));
            let s: Same = from_slice(&bytes, &no_shapes).unwrap();
            assert_eq!((s.a, s.b.as_str(), s.c), (7, "bee", true));
        }
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let (bytes, _) = round(&sample());
        for cut in 0..bytes.len() {
            assert!(from_slice::<Outer>(&bytes[..cut], &no_shapes).is_err());
        }
        assert!(from_slice::<u64>(&[T_UINT, 0x80, 0x00], &no_shapes).is_err());
        assert!(from_slice::<u64>(&[0xFF], &no_shapes).is_err());
        // A struct whose shape is unknown.
        let mut s = vec![T_STRUCT];
        s.extend_from_slice(&7u64.to_le_bytes());
        s.push(0);
        assert!(validate(&s, &no_shapes).is_err());
        // Deep nesting is refused, not a stack overflow.
        let deep = [T_SEQ, 1].repeat(10_000);
        assert!(validate(&deep, &no_shapes).is_err());
    }

    #[test]
    fn shape_entries_are_checked_against_their_id() {
        let names = ["a", "bc"];
        let id = shape_id(&names);
        let bytes = encode_shape(&names);
        assert_eq!(&*decode_shape(id, &bytes).unwrap()[1], "bc");
        assert!(decode_shape(id ^ 1, &bytes).is_err());
    }

    proptest! {
        #[test]
        fn integers_and_strings_round_trip(a: u64, b: i64, s: String, v: Vec<Option<i32>>) {
            let value = (a, b, s, v);
            let (_, back) = round(&value);
            prop_assert_eq!(back, value);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = from_slice::<Outer>(&bytes, &no_shapes);
            let _ = to_json(&bytes, &no_shapes);
            let _ = validate(&bytes, &no_shapes);
        }
    }
}
