//! Content negotiation, and an exposition encoded (and compressed) once per format.

use super::*;

#[test]
fn negotiation_prefers_openmetrics_only_when_asked_and_honours_quality_values() {
    let cases = [
        (None, Format::Prometheus),
        (Some("text/plain"), Format::Prometheus),
        (Some("*/*"), Format::Prometheus),
        // Prometheus' own scrape header.
        (
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            Format::OpenMetrics,
        ),
        (
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            Format::OpenMetrics,
        ),
        (
            Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Prometheus,
        ),
        (Some("application/openmetrics-text;q=0"), Format::Prometheus),
        (
            Some("Application/OpenMetrics-Text; q=0.2, text/plain; q=0.1"),
            Format::OpenMetrics,
        ),
        (Some("application/json"), Format::Prometheus),
    ];
    for (accept, want) in cases {
        assert_eq!(Format::negotiate(accept), want, "{accept:?}");
    }
}

#[test]
fn an_exposition_encodes_each_format_once_and_shares_it() {
    let exposition = Exposition::new(fixture());
    let first = exposition
        .encoded(View::All, Format::Prometheus, Encoding::Identity)
        .expect("encoded");
    let second = exposition
        .encoded(View::All, Format::Prometheus, Encoding::Identity)
        .expect("encoded");
    // The same bytes, not a second encoding.
    assert_eq!(first.as_ptr(), second.as_ptr());
    assert_ne!(
        exposition
            .encoded(View::All, Format::OpenMetrics, Encoding::Identity)
            .expect("encoded"),
        first
    );
    // Compressed once too, from the same text.
    let gz = exposition
        .encoded(View::All, Format::Prometheus, Encoding::Gzip)
        .expect("gzip");
    let again = exposition
        .encoded(View::All, Format::Prometheus, Encoding::Gzip)
        .expect("gzip");
    assert_eq!(gz.as_ptr(), again.as_ptr());
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
        .expect("gunzip");
    assert_eq!(text, first);
}
