//! How a batch is split into groups, each worked through in order.
//!
//! Standard queues: one group per student, in version order (so a burst of
//! patches does not defer itself), all groups at once. FIFO queues: one group
//! per `MessageGroupId`, in receive order; when a message of a group does not
//! finish (retry, deferred, released), the later ones of that group are
//! released unprocessed, so SQS hands them out again after it, in order.

use student_shared::Outcome;

use super::message::Work;

/// How a batch is split into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Standard queue: by student, in version order; a failure does not hold the group.
    ByStudent,
    /// FIFO queue: by `MessageGroupId`, in receive order; a failure releases the rest.
    ByMessageGroup,
}

impl Grouping {
    /// FIFO for a queue URL (or ARN) ending in `.fifo`.
    pub fn for_queue(queue: &str) -> Self {
        if queue.ends_with(".fifo") { Self::ByMessageGroup } else { Self::ByStudent }
    }

    /// Splits a batch into groups (keeping the batch's order of groups).
    pub fn group<L>(self, batch: Vec<Work<L>>) -> Vec<Vec<Work<L>>> {
        match self {
            Self::ByStudent => group_by_student(batch),
            Self::ByMessageGroup => group_by(batch, |w| w.message.group_id.clone()),
        }
    }

    /// Whether the rest of a group waits after a message ended with
    /// `outcome`: on FIFO queues, when the message is not done with
    /// (deleted or dead-lettered) but left to come back.
    pub fn holds_after(self, outcome: Outcome) -> bool {
        self == Self::ByMessageGroup && !outcome.is_done()
    }
}

/// One group per student, sorted by version; each undecodable message alone.
pub fn group_by_student<L>(batch: Vec<Work<L>>) -> Vec<Vec<Work<L>>> {
    let mut groups = group_by(batch, |w| w.student_id().map(str::to_owned));
    for group in &mut groups {
        group.sort_by_key(Work::version);
    }
    groups
}

/// Groups by `key` in arrival order; a message without a key is alone.
fn group_by<L>(batch: Vec<Work<L>>, key: impl Fn(&Work<L>) -> Option<String>) -> Vec<Vec<Work<L>>> {
    let mut groups: Vec<(Option<String>, Vec<Work<L>>)> = Vec::new();
    for work in batch {
        let k = key(&work);
        match groups.iter_mut().find(|(g, _)| k.is_some() && *g == k) {
            Some((_, group)) => group.push(work),
            None => groups.push((k, vec![work])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::handler::message::Message;

    fn work(body: &str, group: Option<&str>) -> Work<()> {
        let message = Message {
            message_id: body.len().to_string(),
            receipt_handle: "r".into(),
            body: body.into(),
            receive_count: 1,
            received_at: Instant::now(),
            group_id: group.map(str::to_owned),
            attributes: Default::default(),
            trace_header: None,
        };
        Work::new(message, ())
    }

    fn ev(student: &str, version: u64) -> String {
        format!(
            r#"{{"type":"StudentDeleted","eventId":"{student}-{version}","studentId":"{student}","version":{version}}}"#
        )
    }

    fn shape(groups: &[Vec<Work<()>>]) -> Vec<Vec<u64>> {
        groups.iter().map(|g| g.iter().map(Work::version).collect()).collect()
    }

    #[test]
    fn groups_by_student_in_version_order() {
        let batch = [ev("a", 3), ev("b", 1), "not json".into(), ev("a", 1), ev("a", 2), "{".into()];
        let groups = Grouping::ByStudent.group(batch.iter().map(|b| work(b, None)).collect());
        assert_eq!(shape(&groups), vec![vec![1, 2, 3], vec![1], vec![0], vec![0]]);
        assert!(groups[2][0].decoded.is_err());
    }

    #[test]
    fn fifo_groups_by_message_group_in_receive_order() {
        let batch = vec![
            work(&ev("a", 3), Some("g1")),
            work(&ev("b", 1), Some("g2")),
            work("not json", Some("g1")),
            work(&ev("a", 1), Some("g1")),
        ];
        let groups = Grouping::for_queue("https://sqs.x/1/students.fifo").group(batch);
        assert_eq!(shape(&groups), vec![vec![3, 0, 1], vec![1]], "receive order kept, never re-sorted");
        assert_eq!(Grouping::for_queue("https://sqs.x/1/students"), Grouping::ByStudent);
        assert_eq!(Grouping::for_queue("arn:aws:sqs:ap-northeast-2:1:students.fifo"), Grouping::ByMessageGroup);
    }

    #[test]
    fn only_finished_messages_let_a_fifo_group_go_on() {
        let fifo = Grouping::ByMessageGroup;
        for done in [Outcome::Applied, Outcome::Duplicate, Outcome::Stale, Outcome::Invalid] {
            assert!(!fifo.holds_after(done), "{done}");
        }
        for unfinished in [Outcome::Retry, Outcome::Deferred, Outcome::Released] {
            assert!(fifo.holds_after(unfinished), "{unfinished}");
        }
        assert!(!Grouping::ByStudent.holds_after(Outcome::Retry), "a student's group never holds");
    }
}
