//! The first fatal error of a run (ECS) or an invocation (Lambda), and the
//! stop it causes. Lifecycle: the runtime creates one slot with its two
//! tokens; whoever meets a fatal error (a settler, the acker, the heartbeat,
//! the receive loop) sets it, which stops new receives and releases in-flight
//! work; the runtime takes the error at the end and fails with it.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::aws::AwsError;

/// Holds the first fatal error and stops the worker when one is recorded.
#[derive(Debug, Clone)]
pub struct FatalSlot {
    error: Arc<Mutex<Option<AwsError>>>,
    stop: CancellationToken,
    abort: CancellationToken,
}

impl FatalSlot {
    /// A slot that cancels `stop` (no new receives) and `abort` (release in-flight work).
    pub fn new(stop: CancellationToken, abort: CancellationToken) -> Self {
        Self { error: Arc::default(), stop, abort }
    }

    /// Records `error` (the first one wins) and stops the worker.
    pub fn set(&self, error: AwsError) {
        if let Ok(mut slot) = self.error.lock()
            && slot.is_none()
        {
            // The cause and its fix are printed once, when the run ends.
            tracing::error!(
                code = error.code_or_kind(),
                action = error.action,
                "fatal: stopping; in-flight messages are released"
            );
            *slot = Some(error);
        }
        self.stop.cancel();
        self.abort.cancel();
    }

    /// Records `error` if it is fatal; tells whether it was.
    pub fn set_if_fatal(&self, error: &AwsError) -> bool {
        let fatal = error.action() == crate::aws::Action::Stop;
        if fatal {
            self.set(error.clone());
        }
        fatal
    }

    /// The recorded error, if any.
    pub fn take(&self) -> Option<AwsError> {
        self.error.lock().ok().and_then(|mut slot| slot.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Kind;

    fn error(kind: Kind, message: &str) -> AwsError {
        AwsError {
            throttling_reasons: crate::aws::error::ThrottlingReasons::default(),
            kind,
            action: "sqs:DeleteMessageBatch",
            resource: "queue q".into(),
            region: "ap-northeast-2".into(),
            code: None,
            message: message.into(),
        }
    }

    #[test]
    fn the_first_fatal_error_wins_and_stops_both_tokens() {
        let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
        let slot = FatalSlot::new(stop.clone(), abort.clone());
        assert!(!slot.set_if_fatal(&error(Kind::Transient, "5xx")), "a transient error is not fatal");
        assert!(!stop.is_cancelled());
        assert!(slot.set_if_fatal(&error(Kind::AccessDenied, "first")));
        slot.set(error(Kind::NotFound, "second"));
        assert!(stop.is_cancelled() && abort.is_cancelled());
        assert_eq!(slot.take().map(|e| e.message), Some("first".to_owned()));
        assert!(slot.take().is_none(), "taken once");
    }
}
