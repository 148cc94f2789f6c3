//! The Runtime API loop (`lambda_runtime`): every invocation runs in a span
//! carrying its request id, so each log line of it names the invocation.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument;

use super::invoke::{Function, InvocationError};

/// Serves invocations until the process is stopped; an error means the
/// Runtime API could not be reached.
pub async fn serve(function: Function) -> Result<(), lambda_runtime::Error> {
    let function = Arc::new(function);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = Arc::clone(&function);
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
        async move { invoke(&function, event).await }.instrument(span)
    }))
    .await
}

async fn invoke(function: &Function, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, InvocationError> {
    let records = event.payload.records.len();
    let result = function.invoke(event.payload, event.context.deadline).await;
    match &result {
        Ok(response) => {
            tracing::info!(records, failed = response.batch_item_failures.len(), "invocation done");
        }
        Err(error) => {
            tracing::error!(error = %error, records, "invocation failed: every message of the batch returns to the queue");
        }
    }
    result
}
