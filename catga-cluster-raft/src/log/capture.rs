//! Captures the log events a test causes, through a filter, on the test's
//! thread.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

/// One event that passed the filter.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) level: Level,
    pub(crate) target: String,
    pub(crate) message: String,
    pub(crate) fields: BTreeMap<String, String>,
}

/// The events recorded so far. Clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    records: Arc<Mutex<Vec<Record>>>,
}

impl Capture {
    /// Records the events of this thread that pass `filter` (`EnvFilter`
    /// directives) until the guard is dropped.
    pub(crate) fn install(filter: &str) -> (DefaultGuard, Capture) {
        let capture = Capture::default();
        let filter = EnvFilter::builder()
            .parse(filter)
            .expect("the directives parse");
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(capture.clone());
        (tracing::subscriber::set_default(subscriber), capture)
    }

    /// The records so far, leaving none.
    pub(crate) fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let message = visitor.0.remove("message").unwrap_or_default();
        self.records.lock().unwrap().push(Record {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message,
            fields: visitor.0,
        });
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}
