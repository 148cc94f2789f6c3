//! Talking to AWS: clients from the SDK's default chain, every AWS failure
//! classified once (retry, dead-letter or stop) with its cause and fix, and
//! the entries of SQS's batch calls, and the extra trusted CAs of `AWS_CA_BUNDLE`.

pub mod clients;
pub mod entries;
pub mod error;
pub mod explain;
pub mod queue;
pub mod table;
pub mod trust;

pub use clients::{Clients, load_sdk_config, region_of};
pub use error::{Action, AwsError, Kind, Resource};
