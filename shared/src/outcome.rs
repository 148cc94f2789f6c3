//! What became of a message, and how a failed write condition is classified
//! from the old item that `ReturnValuesOnConditionCheckFailure=ALL_OLD`
//! returns, without an extra read.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::event::{EventKind, StudentEvent};
use crate::item::attr;

/// The outcome of one message, as logged (`outcome` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The write succeeded; deleted from the queue.
    Applied,
    /// Already applied (same `EventID` stored); deleted.
    Duplicate,
    /// A newer or equal version is stored; deleted.
    Stale,
    /// A patch whose predecessor is not stored yet; left on the queue for later.
    Deferred,
    /// Can never apply; dead-lettered with its reason.
    Invalid,
    /// Transient failures outlasted the retry budget; left on the queue.
    Retry,
    /// Not finished when the worker stopped; made visible again at once.
    Released,
}

impl Outcome {
    /// Every outcome, in declaration order (`outcome as usize` indexes it).
    pub const ALL: [Outcome; 7] =
        [Self::Applied, Self::Duplicate, Self::Stale, Self::Deferred, Self::Invalid, Self::Retry, Self::Released];

    /// The name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Deferred => "deferred",
            Self::Invalid => "invalid",
            Self::Retry => "retry",
            Self::Released => "released",
        }
    }

    /// Whether the message is finished and may be deleted from the queue.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Applied | Self::Duplicate | Self::Stale | Self::Invalid)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a conditional write did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionFailure {
    /// This very event is already stored.
    Duplicate,
    /// The stored version is at least this event's (`equal` when the same).
    Stale {
        /// The version stored.
        stored_version: u64,
    },
    /// A patch whose predecessor is not stored yet.
    Deferred {
        /// The version stored, if any item exists.
        stored_version: Option<u64>,
    },
    /// A patch right after a tombstone: it can never apply.
    PatchOnDeleted,
    /// The old item did not explain the failure (missing or malformed); retry.
    Unexplained,
}

/// Classifies a failed condition from the old item (`None`: no item stored).
pub fn classify_conditional_failure(
    event: &StudentEvent,
    old: Option<&HashMap<String, AttributeValue>>,
) -> ConditionFailure {
    let Some(old) = old else {
        return match event.kind {
            EventKind::StudentPatched => ConditionFailure::Deferred { stored_version: None },
            // Upserts and deletes only fail against a stored item.
            _ => ConditionFailure::Unexplained,
        };
    };
    let event_id = old.get(attr::EVENT_ID).and_then(|v| v.as_s().ok());
    // A record written by hand has no Version: it counts as version 0.
    let stored_version = match old.get(attr::VERSION) {
        None => 0,
        Some(v) => match v.as_n().ok().and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => n,
            None => return ConditionFailure::Unexplained,
        },
    };
    let deleted = matches!(old.get(attr::DELETED), Some(AttributeValue::Bool(true)));
    if event_id.is_some_and(|id| *id == event.event_id) && stored_version == event.version {
        ConditionFailure::Duplicate
    } else if stored_version >= event.version {
        ConditionFailure::Stale { stored_version }
    } else if event.kind != EventKind::StudentPatched {
        ConditionFailure::Unexplained
    } else if stored_version + 1 == event.version && deleted {
        ConditionFailure::PatchOnDeleted
    } else {
        ConditionFailure::Deferred { stored_version: Some(stored_version) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    fn patch(version: u64) -> StudentEvent {
        let body = format!(
            r#"{{"type":"StudentPatched","eventId":"p{version}","studentId":"1","version":{version},"student":{{"grade":1}}}}"#
        );
        decode(body.as_bytes()).expect("valid").event
    }

    fn stored(version: u64, event_id: &str, deleted: bool) -> HashMap<String, AttributeValue> {
        let mut m = HashMap::from([
            ("Version".to_owned(), AttributeValue::N(version.to_string())),
            ("EventID".to_owned(), AttributeValue::S(event_id.to_owned())),
        ]);
        if deleted {
            m.insert("Deleted".to_owned(), AttributeValue::Bool(true));
        }
        m
    }

    #[test]
    fn classification_table() {
        use ConditionFailure::*;
        assert_eq!(classify_conditional_failure(&patch(2), None), Deferred { stored_version: None });
        assert_eq!(
            classify_conditional_failure(&patch(3), Some(&stored(1, "x", false))),
            Deferred { stored_version: Some(1) }
        );
        assert_eq!(classify_conditional_failure(&patch(3), Some(&stored(3, "p3", false))), Duplicate);
        assert_eq!(classify_conditional_failure(&patch(3), Some(&stored(4, "x", true))), Stale { stored_version: 4 });
        assert_eq!(classify_conditional_failure(&patch(3), Some(&stored(2, "d", true))), PatchOnDeleted);
        // A tombstone further back: the patch's own predecessor may still come.
        assert_eq!(
            classify_conditional_failure(&patch(4), Some(&stored(2, "d", true))),
            Deferred { stored_version: Some(2) }
        );
        // Same id at another version: upstream reused an id; versions decide.
        assert_eq!(
            classify_conditional_failure(&patch(3), Some(&stored(1, "p3", false))),
            Deferred { stored_version: Some(1) }
        );
        // A hand-written record without Version counts as version 0.
        let legacy = HashMap::from([("Name".to_owned(), AttributeValue::S("Alice".into()))]);
        assert_eq!(classify_conditional_failure(&patch(2), Some(&legacy)), Deferred { stored_version: Some(0) });
        let garbled = HashMap::from([("Version".to_owned(), AttributeValue::S("x".into()))]);
        assert_eq!(classify_conditional_failure(&patch(3), Some(&garbled)), Unexplained);
    }
}
