//! The pure core of student-worker: the event contract v1 (decoding and
//! validation), the event → DynamoDB item conversion, and the outcome and error
//! types the worker reports. No clients, no tasks, no clock: everything here is
//! data and functions over data, so it can be tested without AWS.

pub mod error;
pub mod event;
pub mod item;
pub mod limits;
pub mod outcome;
pub mod plan;

pub use error::{ContractError, ErrorCode};
pub use event::{Change, Decoded, EventKind, FieldPatch, Status, StudentEvent, StudentPatch, StudentRecord, decode};
pub use item::StudentItem;
pub use outcome::{ConditionFailure, Outcome, classify_conditional_failure};
pub use plan::{WritePlan, plan_write};
