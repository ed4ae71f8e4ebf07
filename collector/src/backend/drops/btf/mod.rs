//! A reader of the kernel's BTF (`/sys/kernel/btf/vmlinux` and the modules' split BTF beside
//! it), just enough for the drop-reason counter: enums by name and their values, the byte
//! offset of a field of a kernel struct (through anonymous members), and the parameters of a
//! tracepoint's prototype. Every read is bounds-checked: a short or odd file is an error, never
//! a panic.
//!
//! Format: `include/uapi/linux/btf.h` and Documentation/bpf/btf.rst. A module's BTF is split
//! BTF: its type ids continue after the base's, and its string offsets after the base's strings.

use std::{borrow::Cow, path::Path};

/// Why BTF could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BtfError {
    /// The file cannot be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data is not BTF, or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A type the caller needs is not in the BTF.
    #[error("the kernel's BTF has no {0}")]
    Missing(String),
}

/// Kinds of BTF types (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Ptr = 2,
    Struct = 4,
    Enum = 6,
    Typedef = 8,
    FuncProto = 13,
    Enum64 = 19,
}

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

/// One BTF blob (vmlinux, or a module's split on vmlinux), with an index of its types.
#[derive(Debug)]
pub(crate) struct Btf {
    data: Vec<u8>,
    /// Byte range of the type section in `data`.
    types: (usize, usize),
    /// Byte range of the string section in `data`.
    strings: (usize, usize),
    /// Offset in `types` of each type, by id minus `first_id`.
    offsets: Vec<usize>,
    /// The id of the first type of this blob (1, or after the base's for split BTF).
    first_id: u32,
    /// The base's string section length (split BTF), where this blob's own strings start.
    first_string: u32,
}

/// A type's common header.
#[derive(Clone, Copy, Debug)]
struct Header {
    name_off: u32,
    kind: u8,
    vlen: usize,
    kind_flag: bool,
    /// Size or referenced type id.
    size_or_type: u32,
    /// Offset of the kind-specific data that follows the header.
    extra: usize,
}

impl Btf {
    /// Reads and indexes the BTF file at `path`; `base` is vmlinux's for a module's split BTF.
    pub(crate) fn from_file(path: &Path, base: Option<&Self>) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data, base)
    }

    /// Indexes BTF `data`; `base` as for [`Btf::from_file`].
    pub(crate) fn parse(data: Vec<u8>, base: Option<&Self>) -> Result<Self, BtfError> {
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Malformed("header cut short"))
        };
        if data.len() < HEADER_LEN || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("no BTF magic (or not little-endian)"));
        }
        let header_len = u32_at(4)? as usize;
        let section = |off: usize, len: usize| -> Result<(usize, usize), BtfError> {
            let start = header_len
                .checked_add(off)
                .ok_or(BtfError::Malformed("section offset"))?;
            let end = start
                .checked_add(len)
                .filter(|end| *end <= data.len())
                .ok_or(BtfError::Malformed("section past the end"))?;
            Ok((start, end))
        };
        let types = section(u32_at(8)? as usize, u32_at(12)? as usize)?;
        let strings = section(u32_at(16)? as usize, u32_at(20)? as usize)?;
        let (first_id, first_string) = base.map_or((1, 0), |b| {
            (
                b.first_id + b.offsets.len() as u32,
                b.first_string + (b.strings.1 - b.strings.0) as u32,
            )
        });
        let mut btf = Self {
            data,
            types,
            strings,
            offsets: Vec::new(),
            first_id,
            first_string,
        };
        let mut at = types.0;
        while at < types.1 {
            btf.offsets.push(at - types.0);
            let header = btf.header_at(at)?;
            at = header.extra + btf.extra_len(&header)?;
        }
        if at != types.1 {
            return Err(BtfError::Malformed("last type runs past the type section"));
        }
        Ok(btf)
    }

    fn u32_at(&self, at: usize) -> Result<u32, BtfError> {
        self.data
            .get(at..at + 4)
            .filter(|_| at + 4 <= self.types.1)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(BtfError::Malformed("type cut short"))
    }

    fn header_at(&self, at: usize) -> Result<Header, BtfError> {
        let info = self.u32_at(at + 4)?;
        Ok(Header {
            name_off: self.u32_at(at)?,
            kind: ((info >> 24) & 0x1f) as u8,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: self.u32_at(at + 8)?,
            extra: at + 12,
        })
    }

    /// Bytes of kind-specific data after a type's header.
    fn extra_len(&self, header: &Header) -> Result<usize, BtfError> {
        Ok(match header.kind {
            // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
            2 | 7..=12 | 16 | 18 => 0,
            // INT, VAR, DECL_TAG: one u32.
            1 | 14 | 17 => 4,
            // ARRAY: btf_array.
            3 => 12,
            // STRUCT, UNION: btf_member; DATASEC: btf_var_secinfo; ENUM64: btf_enum64.
            4 | 5 | 15 | 19 => 12 * header.vlen,
            // ENUM: btf_enum; FUNC_PROTO: btf_param.
            6 | 13 => 8 * header.vlen,
            _ => return Err(BtfError::Malformed("unknown type kind")),
        })
    }

    /// The header of type `id`, when this blob (or its base, passed as `base`) holds it.
    fn header(&self, id: u32) -> Option<Header> {
        let index = id.checked_sub(self.first_id)? as usize;
        let at = self.types.0 + *self.offsets.get(index)?;
        self.header_at(at).ok()
    }

    /// The string at `offset` (this blob's own strings; `None` for a base string).
    fn own_string(&self, offset: u32) -> Option<Cow<'_, str>> {
        let offset = offset.checked_sub(self.first_string)? as usize;
        let bytes = self.data.get(self.strings.0 + offset..self.strings.1)?;
        let end = bytes.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&bytes[..end]))
    }

    /// The string at `offset`, looked up in `base` when it is one of the base's.
    fn string<'a>(&'a self, base: Option<&'a Self>, offset: u32) -> Cow<'a, str> {
        if offset < self.first_string {
            return base
                .and_then(|b| b.own_string(offset))
                .unwrap_or(Cow::Borrowed(""));
        }
        self.own_string(offset).unwrap_or(Cow::Borrowed(""))
    }

    /// Ids of this blob's types of `kind`, with their names (`base`: vmlinux, for a module).
    pub(crate) fn named<'a>(
        &'a self,
        base: Option<&'a Self>,
        kind: Kind,
    ) -> impl Iterator<Item = (u32, Cow<'a, str>)> + 'a {
        (0..self.offsets.len() as u32).filter_map(move |index| {
            let id = self.first_id + index;
            let header = self.header(id)?;
            (header.kind == kind as u8).then(|| (id, self.string(base, header.name_off)))
        })
    }

    /// The id of the type of `kind` named `name` (vmlinux; the first one).
    pub(crate) fn find(&self, kind: Kind, name: &str) -> Result<u32, BtfError> {
        self.named(None, kind)
            .find(|(_, n)| n == name)
            .map(|(id, _)| id)
            .ok_or_else(|| BtfError::Missing(format!("{} {name}", kind_name(kind))))
    }

    /// The enumerators of enum `id` (ENUM or ENUM64), with their values.
    pub(crate) fn enumerators(&self, base: Option<&Self>, id: u32) -> Vec<(String, i64)> {
        let Some(header) = self.header(id) else {
            return Vec::new();
        };
        let (step, wide) = match header.kind {
            6 => (8, false),
            19 => (12, true),
            _ => return Vec::new(),
        };
        let signed = header.kind_flag;
        (0..header.vlen)
            .filter_map(|i| {
                let at = header.extra + i * step;
                let name = self.string(base, self.u32_at(at).ok()?).into_owned();
                let low = self.u32_at(at + 4).ok()?;
                let value = if wide {
                    let high = self.u32_at(at + 8).ok()?;
                    ((u64::from(high) << 32) | u64::from(low)) as i64
                } else if signed {
                    i64::from(low as i32)
                } else {
                    i64::from(low)
                };
                Some((name, value))
            })
            .collect()
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<(u32, Header)> {
        for _ in 0..32 {
            let header = self.header(id)?;
            match header.kind {
                8..=11 | 18 => id = header.size_or_type,
                _ => return Some((id, header)),
            }
        }
        None
    }

    /// The byte offset of field `path` (`["nd_net", "net"]`) in struct `id`, looking through
    /// anonymous structs and unions. Bitfields are refused.
    pub(crate) fn offset_of(&self, id: u32, path: &[&str]) -> Result<u32, BtfError> {
        let mut bits = 0u64;
        let mut current = id;
        for (depth, field) in path.iter().enumerate() {
            let (off, member) = self
                .member(current, field, 0)
                .ok_or_else(|| BtfError::Missing(format!("field {}", path[..=depth].join("."))))?;
            bits += u64::from(off);
            current = member;
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Missing(format!(
                "byte-aligned field {}",
                path.join(".")
            )));
        }
        u32::try_from(bits / 8).map_err(|_| BtfError::Malformed("field offset"))
    }

    /// Bit offset and type of member `name` of the struct or union `id`, searching anonymous
    /// members (`depth` bounds the recursion).
    fn member(&self, id: u32, name: &str, depth: u32) -> Option<(u32, u32)> {
        let (_, header) = self.resolve(id)?;
        if !matches!(header.kind, 4 | 5) || depth > 8 {
            return None;
        }
        for i in 0..header.vlen {
            let at = header.extra + i * 12;
            let member_name = self.u32_at(at).ok()?;
            let member_type = self.u32_at(at + 4).ok()?;
            let raw = self.u32_at(at + 8).ok()?;
            let (offset, bitfield) = if header.kind_flag {
                (raw & 0x00ff_ffff, raw >> 24 != 0)
            } else {
                (raw, false)
            };
            let this = self.string(None, member_name);
            if this == name {
                return (!bitfield).then_some((offset, member_type));
            }
            if this.is_empty()
                && let Some((inner, ty)) = self.member(member_type, name, depth + 1)
            {
                return Some((offset + inner, ty));
            }
        }
        None
    }

    /// The parameter types of the prototype that the typedef `name` points to (a tracepoint's
    /// `btf_trace_<name>`), in C spelling: `struct sk_buff *`, `enum skb_drop_reason`.
    pub(crate) fn prototype(&self, name: &str) -> Result<Vec<String>, BtfError> {
        let typedef = self.find(Kind::Typedef, name)?;
        let missing = || BtfError::Missing(format!("function prototype behind {name}"));
        let pointer = self.header(typedef).ok_or_else(missing)?.size_or_type;
        let (_, pointer) = self.resolve(pointer).ok_or_else(missing)?;
        if pointer.kind != Kind::Ptr as u8 {
            return Err(missing());
        }
        let (_, proto) = self.resolve(pointer.size_or_type).ok_or_else(missing)?;
        if proto.kind != Kind::FuncProto as u8 {
            return Err(missing());
        }
        Ok((0..proto.vlen)
            .map(|i| {
                self.u32_at(proto.extra + i * 8 + 4)
                    .map_or_else(|_| "?".to_owned(), |ty| self.spell(ty, 0))
            })
            .collect())
    }

    /// A type in C spelling (enough to compare with an expected one).
    fn spell(&self, id: u32, depth: u32) -> String {
        if id == 0 {
            return "void".to_owned();
        }
        let Some((_, header)) = self.resolve(id) else {
            return "?".to_owned();
        };
        let name = self.string(None, header.name_off);
        match header.kind {
            2 if depth < 4 => format!("{} *", self.spell(header.size_or_type, depth + 1)),
            4 => format!("struct {name}"),
            5 => format!("union {name}"),
            6 | 19 => format!("enum {name}"),
            _ => name.into_owned(),
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Struct => "struct",
        Kind::Enum | Kind::Enum64 => "enum",
        Kind::Typedef => "typedef",
        _ => "type",
    }
}

#[cfg(test)]
mod tests;
