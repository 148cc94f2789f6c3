//! The trace context a message carries, so every log line about it can name
//! its trace: the X-Ray `AWSTraceHeader` system attribute (set by upstream
//! services and X-Ray: `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=…;Sampled=1`)
//! or, failing that, a W3C `traceparent` message attribute
//! (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).

/// The SQS system attribute with the X-Ray trace header (asked for on
/// receive, kept on a dead letter and on a replay).
pub const AWS_TRACE_HEADER: &str = "AWSTraceHeader";
/// The message attribute some producers put W3C trace context in.
pub const TRACEPARENT: &str = "traceparent";

/// The trace id of an X-Ray trace header: its `Root=` value.
pub fn xray_trace_id(header: &str) -> Option<&str> {
    let root = header.split(';').map(str::trim).find_map(|part| part.strip_prefix("Root="))?;
    let mut parts = root.split('-');
    let valid = parts.next() == Some("1")
        && parts.next().is_some_and(|t| t.len() == 8 && is_hex(t))
        && parts.next().is_some_and(|t| t.len() == 24 && is_hex(t))
        && parts.next().is_none();
    valid.then_some(root)
}

/// The trace id of a W3C `traceparent`: 32 hex digits, not all zero.
pub fn w3c_trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = version.len() == 2
        && is_hex(version)
        && version != "ff"
        && trace_id.len() == 32
        && is_hex(trace_id)
        && trace_id.bytes().any(|b| b != b'0')
        && parent.len() == 16
        && is_hex(parent)
        && flags.len() == 2
        && is_hex(flags);
    valid.then_some(trace_id)
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xray_root_is_the_trace_id() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(xray_trace_id(header), Some("1-5759e988-bd862e3fe1be46a994272793"));
        assert_eq!(
            xray_trace_id("Sampled=0; Root=1-5759e988-bd862e3fe1be46a994272793"),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        for bad in [
            "",
            "Parent=53995c3f42cd8ad8",
            "Root=1-xyz-bd862e3fe1be46a994272793",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
        ] {
            assert_eq!(xray_trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_traceparent_gives_its_trace_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(w3c_trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(w3c_trace_id(bad), None, "{bad}");
        }
    }
}
