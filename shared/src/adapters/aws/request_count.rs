//! Counts the requests the AWS SDK clients send, by service and operation (retries
//! included: each transmission counts). The per-run request budget and the handlers'
//! calls per invocation are measured with it; it changes nothing about the requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::ConfigBag;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// `(service, operation)` → requests sent, e.g. `("dynamodb", "BatchGetItem")`.
pub type RequestCounts = BTreeMap<(String, String), u64>;

/// Shared by every client it is installed on; clones count into the same table.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<RequestCounts>>,
}

impl RequestCounter {
    pub fn new() -> RequestCounter {
        RequestCounter::default()
    }

    /// The interceptor to install on a client's configuration.
    pub fn interceptor(&self) -> SharedInterceptor {
        SharedInterceptor::new(self.clone())
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The counts so far, and zero from here on.
    pub fn take(&self) -> RequestCounts {
        self.counts
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = match cfg.load::<Metadata>() {
            Some(m) => (m.service().to_ascii_lowercase(), m.name().to_owned()),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((service, operation)).or_default() += 1;
        }
        Ok(())
    }
}
