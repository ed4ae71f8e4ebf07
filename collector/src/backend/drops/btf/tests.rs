//! The BTF reader on blobs built here (a builder of the few kinds it reads), on cut and odd
//! data, and on the running kernel's own BTF where there is one.

use super::*;

/// Builds a little-endian BTF blob: types and strings.
#[derive(Default)]
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    count: u32,
}

impl Builder {
    fn new() -> Self {
        Self {
            strings: vec![0],
            ..Self::default()
        }
    }

    fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let at = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        at
    }

    fn push(
        &mut self,
        name: &str,
        kind: u32,
        vlen: u32,
        flag: bool,
        third: u32,
        extra: &[u32],
    ) -> u32 {
        let name = self.string(name);
        let info = (kind << 24) | vlen | (u32::from(flag) << 31);
        for word in [name, info, third].iter().chain(extra) {
            self.types.extend_from_slice(&word.to_le_bytes());
        }
        self.count += 1;
        self.count
    }

    fn int(&mut self, name: &str, size: u32) -> u32 {
        self.push(name, 1, 0, false, size, &[size * 8])
    }

    fn ptr(&mut self, to: u32) -> u32 {
        self.push("", 2, 0, false, to, &[])
    }

    /// A struct (or union) with members (name, type, bit offset).
    fn aggregate(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let mut extra = Vec::new();
        for (member, ty, bits) in members {
            extra.extend([self.string(member), *ty, *bits]);
        }
        self.push(name, kind, members.len() as u32, false, size, &extra)
    }

    fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
        let mut extra = Vec::new();
        for (enumerator, value) in values {
            extra.extend([self.string(enumerator), *value as u32]);
        }
        self.push(name, 6, values.len() as u32, false, 4, &extra)
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend([1, 0]);
        let header = HEADER_LEN as u32;
        let types = self.types.len() as u32;
        for word in [header, 0, types, types, self.strings.len() as u32] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A kernel in miniature: `sk_buff` with `dev` in an anonymous union, `net_device` with
/// `ifindex` and `nd_net` (a typedef'd struct holding `net`), `net` with `ns.inum`, the enum
/// and the tracepoint's typedef.
fn kernel(with_reason: bool) -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let uint = b.int("unsigned int", 4);
    let net = b.aggregate(4, "net", 0, &[]);
    let net_ptr = b.ptr(net);
    let possible = b.aggregate(4, "", 8, &[("net", net_ptr, 0)]);
    let possible_t = b.push("possible_net_t", 8, 0, false, possible, &[]);
    let dev = b.aggregate(4, "net_device", 0, &[]);
    let dev_ptr = b.ptr(dev);
    let anon = b.aggregate(5, "", 8, &[("dev", dev_ptr, 0), ("dev_scratch", uint, 0)]);
    let skb = b.aggregate(4, "sk_buff", 0, &[("next", dev_ptr, 0), ("", anon, 128)]);
    let skb_ptr = b.ptr(skb);
    let ns = b.aggregate(
        4,
        "ns_common",
        16,
        &[("ns_type", uint, 0), ("inum", uint, 96)],
    );
    let reason = b.enumeration(
        "skb_drop_reason",
        &[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_MAX", 4),
            ("SKB_DROP_REASON_SUBSYS_MASK", -65536),
        ],
    );
    b.enumeration("ovs_drop_reason", &[("OVS_DROP_LAST_ACTION", 2 << 16 | 1)]);
    // Patch the empty structs with their members now that the types exist.
    let real_dev = b.aggregate(
        4,
        "net_device",
        64,
        &[("ifindex", int, 256), ("nd_net", possible_t, 384)],
    );
    let real_net = b.aggregate(4, "net", 64, &[("ns", ns, 512)]);
    let _ = (real_dev, real_net);
    let void_ptr = b.ptr(0);
    let mut params = vec![b.string(""), void_ptr, b.string(""), skb_ptr];
    if with_reason {
        params.extend([b.string(""), void_ptr, b.string(""), reason]);
    }
    let proto = b.push("", 13, params.len() as u32 / 2, false, 0, &params);
    let proto_ptr = b.ptr(proto);
    b.push("btf_trace_kfree_skb", 8, 0, false, proto_ptr, &[]);
    b.build()
}

#[test]
fn offsets_are_found_through_anonymous_members_and_typedefs() {
    let btf = Btf::parse(kernel(true), None).expect("parses");
    let skb = btf.find(Kind::Struct, "sk_buff").expect("sk_buff");
    assert_eq!(btf.offset_of(skb, &["dev"]).expect("dev"), 16);
    // The first `net_device` is the empty one (a declaration-like struct): `find` takes the
    // first; the layout code looks the members up by name, so an empty one has none.
    let dev = btf
        .named(None, Kind::Struct)
        .filter(|(_, n)| n == "net_device")
        .map(|(id, _)| id)
        .last()
        .expect("net_device");
    assert_eq!(btf.offset_of(dev, &["ifindex"]).expect("ifindex"), 32);
    assert_eq!(btf.offset_of(dev, &["nd_net", "net"]).expect("nd_net"), 48);
    let net = btf
        .named(None, Kind::Struct)
        .filter(|(_, n)| n == "net")
        .map(|(id, _)| id)
        .last()
        .expect("net");
    assert_eq!(btf.offset_of(net, &["ns", "inum"]).expect("inum"), 64 + 12);
    let missing = btf
        .offset_of(net, &["ns", "nothing"])
        .expect_err("no field");
    assert_eq!(
        missing.to_string(),
        "the kernel's BTF has no field ns.nothing"
    );
}

#[test]
fn enumerators_and_the_prototype_read_back() {
    let btf = Btf::parse(kernel(true), None).expect("parses");
    let reason = btf.find(Kind::Enum, "skb_drop_reason").expect("enum");
    let values = btf.enumerators(None, reason);
    assert_eq!(values[2], ("SKB_DROP_REASON_NO_SOCKET".to_owned(), 3));
    assert_eq!(
        btf.prototype("btf_trace_kfree_skb").expect("prototype"),
        [
            "void *",
            "struct sk_buff *",
            "void *",
            "enum skb_drop_reason"
        ]
    );
    let old = Btf::parse(kernel(false), None).expect("parses");
    assert_eq!(
        old.prototype("btf_trace_kfree_skb").expect("prototype"),
        ["void *", "struct sk_buff *"]
    );
}

#[test]
fn cut_or_foreign_data_is_an_error_never_a_panic() {
    let whole = kernel(true);
    for len in 0..whole.len() {
        let _ = Btf::parse(whole[..len].to_vec(), None);
    }
    assert!(matches!(
        Btf::parse(b"\x9f\xeb".to_vec(), None),
        Err(BtfError::Malformed(_))
    ));
    let mut foreign = whole.clone();
    foreign[0] = 0;
    assert!(matches!(
        Btf::parse(foreign, None),
        Err(BtfError::Malformed(_))
    ));
    // A type of an unknown kind.
    let mut odd = Builder::new();
    odd.push("x", 31, 0, false, 0, &[]);
    assert!(matches!(
        Btf::parse(odd.build(), None),
        Err(BtfError::Malformed(_))
    ));
    // Every byte flipped in turn: parsing and the lookups never panic.
    for at in 0..whole.len() {
        let mut flipped = whole.clone();
        flipped[at] ^= 0xa5;
        if let Ok(btf) = Btf::parse(flipped, None) {
            let _ = btf.prototype("btf_trace_kfree_skb");
            if let Ok(skb) = btf.find(Kind::Struct, "sk_buff") {
                let _ = btf.offset_of(skb, &["dev"]);
            }
        }
    }
}

#[test]
fn a_module_split_on_the_base_continues_its_ids_and_strings() {
    let base = Btf::parse(kernel(true), None).expect("base");
    let base_strings = (base.strings.1 - base.strings.0) as u32;
    // The module's enum: its name and enumerator in its own strings (offsets after the base's).
    let mut m = Builder {
        strings: vec![0],
        ..Builder::default()
    };
    let name = m.string("mac80211_drop_reason") + base_strings - 1;
    let enumerator = m.string("RX_DROP_U_MIC_FAIL") + base_strings - 1;
    m.strings.remove(0);
    let info = (6u32 << 24) | 1;
    for word in [name, info, 4, enumerator, 1 << 16 | 1] {
        m.types.extend_from_slice(&word.to_le_bytes());
    }
    let module = Btf::parse(m.build(), Some(&base)).expect("module");
    let enums: Vec<_> = module.named(Some(&base), Kind::Enum).collect();
    assert_eq!(enums.len(), 1);
    assert_eq!(enums[0].0, base.first_id + base.offsets.len() as u32);
    assert_eq!(enums[0].1, "mac80211_drop_reason");
    assert_eq!(
        module.enumerators(Some(&base), enums[0].0),
        [("RX_DROP_U_MIC_FAIL".to_owned(), 65537)]
    );
}

#[test]
fn the_running_kernel_has_the_fields_the_drop_program_reads() {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    if !path.exists() {
        println!(
            "skipped: this kernel publishes no BTF at {}",
            path.display()
        );
        return;
    }
    let btf = Btf::from_file(path, None).expect("vmlinux BTF parses");
    let skb = btf.find(Kind::Struct, "sk_buff").expect("sk_buff");
    let dev = btf.offset_of(skb, &["dev"]).expect("sk_buff.dev");
    assert!(dev > 0 && dev.is_multiple_of(8), "{dev}");
    let net = btf.find(Kind::Struct, "net").expect("net");
    btf.offset_of(net, &["ns", "inum"]).expect("net.ns.inum");
}

#[test]
fn a_kernel_without_the_reason_argument_is_refused_with_its_prototype() {
    let old = Btf::parse(kernel(false), None).expect("parses");
    let err = crate::backend::drops::Layout::from_btf(&old, &[]).expect_err("no reason");
    assert_eq!(
        err.to_string(),
        "the kfree_skb tracepoint has no drop reason as its third argument (prototype: void *, struct sk_buff *; Linux 5.17 or later is needed)"
    );
    // With the argument, the miniature kernel's layout and names are read.
    let new = Btf::parse(kernel(true), None).expect("parses");
    let module = new; // the same blob stands for vmlinux; no modules.
    let layout = crate::backend::drops::Layout::from_btf(&module, &[]);
    // The miniature's first `net_device` and `net` are empty: their fields are missing, named.
    let err = layout.expect_err("empty net_device first");
    assert_eq!(err.to_string(), "the kernel's BTF cannot be used");
}
