//! Content-Encoding of `/metrics`: gzip (what Prometheus asks for), zstd when a client prefers
//! it, or none, negotiated from `Accept-Encoding` as RFC 9110 describes (quality values,
//! `identity`, `*`).

use std::io::Write as _;

use super::accept::weighted;

/// A content coding linkmeter can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// No compression.
    Identity,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// Every coding, in the order of preference among equal quality values.
    pub(crate) const ALL: [Self; 3] = [Self::Zstd, Self::Gzip, Self::Identity];

    const fn token(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// The `Content-Encoding` header value; `None` for identity.
    pub(crate) const fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            other => Some(other.token()),
        }
    }

    /// Picks the coding from an `Accept-Encoding` header: the acceptable one with the highest
    /// quality value, zstd before gzip before identity on a tie. Without the header, or when
    /// nothing listed is acceptable but identity was not refused, identity. `None` when every
    /// coding linkmeter has is refused (`identity;q=0` and no other).
    pub(crate) fn negotiate(accept_encoding: Option<&str>) -> Option<Self> {
        let Some(header) = accept_encoding else {
            return Some(Self::Identity);
        };
        let mut star = None;
        let mut listed: Vec<(String, f32)> = Vec::new();
        for (coding, q) in weighted(header) {
            if coding == "*" {
                star = Some(q);
            } else {
                listed.push((coding, q));
            }
        }
        let quality = |coding: Self| {
            let explicit = listed
                .iter()
                .find(|(c, _)| c == coding.token() || (coding == Self::Gzip && c == "x-gzip"))
                .map(|&(_, q)| q);
            match (explicit, star, coding) {
                (Some(q), _, _) | (None, Some(q), _) => q,
                // Identity is acceptable unless refused explicitly or through `*`.
                (None, None, Self::Identity) => 0.001,
                (None, None, _) => 0.0,
            }
        };
        let mut best: Option<(Self, f32)> = None;
        for coding in Self::ALL {
            let q = quality(coding);
            if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((coding, q));
            }
        }
        best.map(|(coding, _)| coding)
    }

    /// `body` in this coding. gzip at level 1 and zstd at level 1: an exposition is highly
    /// repetitive text, so the fastest levels already shrink it about 10×, and the time goes
    /// into every scrape.
    ///
    /// # Errors
    ///
    /// The compressor failed (not expected for in-memory buffers).
    pub(crate) fn apply(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Identity => Ok(body.to_vec()),
            Self::Gzip => {
                let mut out = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 8),
                    flate2::Compression::fast(),
                );
                out.write_all(body)?;
                out.finish()
            }
            Self::Zstd => zstd::bulk::compress(body, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_acceptable_coding_wins() {
        let cases = [
            (None, Some(Encoding::Identity)),
            (Some("gzip"), Some(Encoding::Gzip)),
            (Some("gzip, deflate, br"), Some(Encoding::Gzip)),
            (Some("zstd, gzip"), Some(Encoding::Zstd)),
            (Some("gzip;q=1.0, zstd;q=0.5"), Some(Encoding::Gzip)),
            (Some("br"), Some(Encoding::Identity)),
            (Some("*"), Some(Encoding::Zstd)),
            (Some("gzip;q=0"), Some(Encoding::Identity)),
            (Some("identity;q=0, gzip"), Some(Encoding::Gzip)),
            (Some("identity;q=0"), None),
            (Some("*;q=0"), None),
            (Some("x-gzip"), Some(Encoding::Gzip)),
            (Some("GZIP ; q=0.8"), Some(Encoding::Gzip)),
            (Some("gzip;q=nan, zstd;q=abc"), Some(Encoding::Zstd)),
            (Some(",,;q=,"), Some(Encoding::Identity)),
        ];
        for (header, want) in cases {
            assert_eq!(Encoding::negotiate(header), want, "{header:?}");
        }
    }

    #[test]
    fn compressed_bodies_decode_to_the_same_text() {
        use std::io::Read as _;
        let body = "linkmeter_interface_packets_total{interface=\"eth0\"} 1\n".repeat(1000);
        let gz = Encoding::Gzip.apply(body.as_bytes()).expect("gzip");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text, body);
        assert!(gz.len() * 10 < body.len());
        let zs = Encoding::Zstd.apply(body.as_bytes()).expect("zstd");
        assert_eq!(
            zstd::bulk::decompress(&zs, body.len()).expect("unzstd"),
            body.as_bytes()
        );
    }
}
