//! Limits of the event contract v1 and of the AWS services it travels through.
//! Named once here so the decoder, the worker and the docs agree.

/// SQS's maximum message size, and so the largest event body we accept.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// `eventId`: 1 to this many characters.
pub const MAX_EVENT_ID_CHARS: usize = 128;
/// `studentId`: 1 to this many characters.
pub const MAX_STUDENT_ID_CHARS: usize = 64;
/// `version` ceiling: 2^53 − 1, the largest integer every JSON reader keeps exactly.
pub const MAX_VERSION: u64 = (1 << 53) - 1;
/// `student.name`: 1 to this many characters.
pub const MAX_NAME_CHARS: usize = 256;
/// `student.email`: at most this many characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// `student.grade`: 0 to this value.
pub const MAX_GRADE: u64 = 99;
/// `student.courses`: at most this many entries.
pub const MAX_COURSES: usize = 100;
/// Each course code: 1 to this many characters.
pub const MAX_COURSE_CHARS: usize = 32;
/// Longest reason kept in a dead letter's `ErrorMessage` attribute.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 256;
